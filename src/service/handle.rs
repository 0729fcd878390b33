//! [`EmbedService`]: the cheap, cloneable handle callers submit to, and
//! its builder.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::config::ServiceConfig;
use super::metrics::{Kind, ServiceMetrics, UnloadReport};
use super::pending::Pending;
use super::queue::{Request, Shared, Status, Submitting};
use super::worker::Worker;
use crate::batch::{tokenize, BatchConfig};
use crate::embedder::{
    EmbedOptions, Embedder, ModelInfo, ModelState, Reranker, Tokens, Truncation, WithOptions,
};
use crate::error::{Error, Result};
use crate::memory::{MemoryBudget, MemoryConfig};
use crate::pressure::PressureLevel;
use crate::rerank::QueryPairs;

/// One resident model (and, optionally, a cross-encoder beside it)
/// shared by many callers.
///
/// A cheap `Clone + Send + Sync` handle: callers on any thread submit
/// texts and get their own vectors back, in their order, blocking
/// ([`embed`](Self::embed)) or as a future that runs on any executor
/// ([`embed_async`](Self::embed_async)). One [`Worker`] owns the forward
/// passes: requests that arrive while a batch runs are merged into the
/// next batches, which are sized by the same memory prediction and
/// adaptive rule as [`BatchEmbedder`](crate::BatchEmbedder).
///
/// Guarantees (see `docs/service.md`):
/// - admission in units of cost: a request is tokenized on the caller's
///   thread, once (the worker runs those tokens), and it is queued whole
///   or refused at once
///   ([`Error::Overloaded`], [`Error::MemoryCritical`],
///   [`Error::RequestTooLarge`]), never left waiting without bound;
/// - every accepted request gets exactly one answer; a failing batch fails
///   only its requests; a panicking embedder is contained; a worker that
///   cannot go on fails every queued and every later request at once
///   ([`Error::WorkerFailed`]);
/// - a caller that gives up (drops its future, times out) has its texts
///   skipped before they run.
///
/// ```
/// use membatch::service::EmbedService;
/// use membatch::{Embedder, ModelInfo, Result, Tokens};
///
/// struct Length; // a toy backend: a token per byte, one dimension, the length
/// impl Embedder for Length {
///     fn info(&self) -> ModelInfo { ModelInfo::new(1, 512) }
///     fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
///         Ok(texts.iter().map(|t| Tokens::new(t.bytes().take(512).map(u32::from).collect())).collect())
///     }
///     fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
///         Ok(batch.iter().map(|t| vec![t.len() as f32]).collect())
///     }
/// }
///
/// let service = EmbedService::builder(Length).spawn()?;
/// let callers: Vec<_> = (0..8)
///     .map(|i| {
///         let service = service.clone();
///         std::thread::spawn(move || service.embed(&["x".repeat(i)]))
///     })
///     .collect();
/// for (i, caller) in callers.into_iter().enumerate() {
///     assert_eq!(caller.join().unwrap()?, vec![vec![i as f32]]);
/// }
/// service.shutdown(std::time::Duration::from_secs(1));
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug)]
pub struct EmbedService {
    shared: Arc<Shared>,
}

impl Clone for EmbedService {
    fn clone(&self) -> Self {
        EmbedService::attach(self.shared.clone())
    }
}

impl Drop for EmbedService {
    fn drop(&mut self) {
        // The last handle: nobody can submit any more; what is queued
        // still runs (answers may still be awaited), then the worker ends.
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut q = self.shared.queue.lock();
            if matches!(q.status, Status::Open) {
                q.status = Status::Draining { until: None };
            }
            drop(q);
            self.shared.work.notify_all();
        }
    }
}

impl EmbedService {
    /// A builder for a service over `embedder`.
    pub fn builder(embedder: impl Embedder + 'static) -> EmbedServiceBuilder {
        EmbedServiceBuilder {
            embedder: Arc::new(embedder),
            reranker: None,
            budget: None,
            batch: BatchConfig::default(),
            config: ServiceConfig::default(),
        }
    }

    fn attach(shared: Arc<Shared>) -> Self {
        shared.handles.fetch_add(1, Ordering::AcqRel);
        EmbedService { shared }
    }

    /// Queues `texts` as one request and returns its answer to wait for.
    ///
    /// The texts are tokenized here, on the caller's thread, once: the
    /// worker runs these tokens. Then the request is queued whole or
    /// refused whole. An empty request is answered at once. A text longer
    /// than the model reads is truncated (see
    /// [`submit_with`](Self::submit_with)).
    ///
    /// # Errors
    ///
    /// At once, before anything is queued:
    /// - [`Error::RequestTooLarge`]: more inputs or tokens than one request
    ///   may hold;
    /// - [`Error::MemoryCritical`]: memory is at the critical level;
    /// - [`Error::Overloaded`]: the queue has no room for the request now;
    /// - [`Error::Closed`] or [`Error::WorkerFailed`]: the service takes no
    ///   more work;
    /// - the embedder's tokenization errors.
    ///
    /// Later, from the answer: the error of the batch that ran one of its
    /// texts, [`Error::WorkerFailed`], or [`Error::Closed`] when a shutdown
    /// ran out of time before the request.
    pub fn submit<S: AsRef<str>>(&self, texts: &[S]) -> Result<Pending> {
        self.submit_with(texts, &EmbedOptions::default())
    }

    /// As [`submit`](Self::submit), with this request's own options: the
    /// model's prompt to put before its texts, the dimensions to keep,
    /// what to do with a text longer than the model reads. Requests with
    /// different options share batches.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit); [`Error::InvalidConfig`] for a prompt
    /// the model does not define or dimensions it does not have; with
    /// [`Truncation::Refuse`], [`Error::TextTooLong`] for the first text
    /// truncation would cut.
    pub fn submit_with<S: AsRef<str>>(
        &self,
        texts: &[S],
        options: &EmbedOptions,
    ) -> Result<Pending> {
        let embedder = &*self.shared.embedder;
        options.check(embedder)?;
        let pending = self.admit(Kind::Embed, texts.len(), options.truncation, || {
            tokenize(&WithOptions { embedder, options }, texts)
        })?;
        Ok(match options.dimensions {
            Some(n) => pending.shaped(n, embedder.info().normalized),
            None => pending,
        })
    }

    /// Queues the scoring of every document against `query` with the
    /// service's reranker ([`EmbedServiceBuilder::reranker`]) as one
    /// request: the same admission, queue, worker and memory budget as
    /// embeddings, in batches of pairs planned by a batch rule and cost
    /// model of their own. Its answer holds one one-value vector per
    /// document, in order: the raw relevance logit
    /// ([`rerank`](Self::rerank) unwraps them).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the service has no reranker; otherwise
    /// as [`submit`](Self::submit), counting each pair's tokens.
    pub fn submit_rerank<S: AsRef<str>>(&self, query: &str, documents: &[S]) -> Result<Pending> {
        self.submit_rerank_with(query, documents, Truncation::Cut)
    }

    /// As [`submit_rerank`](Self::submit_rerank), saying what to do with a
    /// pair longer than the reranker reads.
    ///
    /// # Errors
    ///
    /// As [`submit_rerank`](Self::submit_rerank); with
    /// [`Truncation::Refuse`], [`Error::TextTooLong`] for the first pair
    /// truncation would cut.
    pub fn submit_rerank_with<S: AsRef<str>>(
        &self,
        query: &str,
        documents: &[S],
        truncation: Truncation,
    ) -> Result<Pending> {
        let Some((reranker, _)) = &self.shared.reranker else {
            return Err(super::worker::no_reranker());
        };
        self.admit(Kind::Rerank, documents.len(), truncation, || {
            tokenize(&QueryPairs::new(&**reranker, query), documents)
        })
    }

    /// Scores every document against `query`, blocking until the answer
    /// comes: one raw logit per document, in order (see
    /// [`submit_rerank`](Self::submit_rerank)).
    ///
    /// # Errors
    ///
    /// As [`submit_rerank`](Self::submit_rerank).
    pub fn rerank<S: AsRef<str>>(&self, query: &str, documents: &[S]) -> Result<Vec<f32>> {
        let scores = self.submit_rerank(query, documents)?.wait()?;
        Ok(scores.into_iter().map(|s| s[0]).collect())
    }

    /// Admits a request of `inputs` texts of `kind`, which `tokenize`
    /// turns into tokens on this thread: queued whole, or refused whole.
    fn admit(
        &self,
        kind: Kind,
        inputs: usize,
        truncation: Truncation,
        tokenize: impl FnOnce() -> Result<Vec<Tokens>>,
    ) -> Result<Pending> {
        let shared = &self.shared;
        if let Some(e) = shared.queue.lock().refusal() {
            return Err(self.refused(e));
        }
        if inputs == 0 {
            return Ok(Pending::ready(Ok(Vec::new())));
        }
        let config = &shared.config;
        if inputs > config.max_inputs_per_request() {
            return Err(self.refused(Error::RequestTooLarge {
                limit: "inputs",
                got: inputs,
                max: config.max_inputs_per_request(),
            }));
        }
        let reading = shared.batcher.budget().read();
        if reading.level == PressureLevel::Critical {
            return Err(self.refused(Error::MemoryCritical {
                figure_bytes: reading.figure_bytes,
                budget_bytes: reading.budget_bytes,
                retry_after: Duration::from_secs(1),
            }));
        }
        let texts = {
            let _submitting = Submitting::new(shared);
            tokenize()?
        };
        if truncation == Truncation::Refuse {
            if let Some(index) = texts.iter().position(Tokens::is_truncated) {
                return Err(self.refused(Error::TextTooLong {
                    index,
                    max_tokens: self.info_of(kind).max_seq_length,
                }));
            }
        }
        let tokens: usize = texts.iter().map(Tokens::len).sum();
        let truncated = texts.iter().filter(|t| t.is_truncated()).count();
        if tokens > config.max_tokens_per_request() {
            return Err(self.refused(Error::RequestTooLarge {
                limit: "tokens",
                got: tokens,
                max: config.max_tokens_per_request(),
            }));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut q = shared.queue.lock();
            if let Some(e) = q.refusal() {
                drop(q);
                return Err(self.refused(e));
            }
            if q.requests.len() >= config.max_queued_requests()
                || q.tokens + tokens > config.max_queued_tokens()
            {
                let error = Error::Overloaded {
                    retry_after: shared.counters.lock().drain_time(q.tokens),
                    queued_requests: q.requests.len(),
                    queued_tokens: q.tokens,
                    tokens,
                };
                drop(q);
                return Err(self.refused(error));
            }
            q.tokens += tokens;
            q.texts += texts.len();
            q.last_activity = Instant::now();
            q.requests.push_back(Request {
                kind,
                texts,
                tokens,
                tx: Some(tx),
                arrived: Instant::now(),
                span: tracing::Span::current(),
            });
        }
        shared.counters.lock().accepted(kind);
        shared.work.notify_one();
        Ok(Pending::queued(rx, tokens, truncated))
    }

    /// Counts a refusal by its reason and returns it.
    fn refused(&self, error: Error) -> Error {
        let mut c = self.shared.counters.lock();
        match &error {
            Error::Overloaded { .. } => c.refused.overloaded += 1,
            Error::MemoryCritical { .. } => c.refused.memory_critical += 1,
            Error::RequestTooLarge { .. } => c.refused.too_large += 1,
            Error::TextTooLong { .. } => c.refused.text_too_long += 1,
            _ => c.refused.closed += 1,
        }
        drop(c);
        tracing::debug!(error = %error, "request refused");
        error
    }

    /// Embeds `texts`, blocking until the answer comes: one vector per
    /// text, in order.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        self.submit(texts)?.wait()
    }

    /// As [`embed`](Self::embed), giving up after `timeout` (the texts are
    /// then skipped if they have not run).
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`]; otherwise as [`submit`](Self::submit).
    pub fn embed_timeout<S: AsRef<str>>(
        &self,
        texts: &[S],
        timeout: Duration,
    ) -> Result<Vec<Vec<f32>>> {
        self.submit(texts)?.wait_timeout(timeout)
    }

    /// Embeds `texts` as a future that needs no particular runtime. The
    /// request is submitted (tokenized) when this is called; the
    /// future only waits for the answer, and dropping it gives the request
    /// up.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub fn embed_async<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> impl Future<Output = Result<Vec<Vec<f32>>>> + Send + 'static {
        let submitted = self.submit(texts);
        async move { submitted?.await }
    }

    /// The embedder's description (dimension, `max_seq_length`, …).
    pub fn info(&self) -> ModelInfo {
        self.shared.embedder.info()
    }

    /// The reranker's description, when the service has one.
    pub fn reranker_info(&self) -> Option<ModelInfo> {
        self.shared.reranker.as_ref().map(|(r, _)| r.info())
    }

    /// The description of the model a request of `kind` runs on (the
    /// embedder's when a rerank request could not have been admitted).
    fn info_of(&self, kind: Kind) -> ModelInfo {
        match kind {
            Kind::Rerank => self.reranker_info().unwrap_or_else(|| self.info()),
            Kind::Embed => self.info(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ServiceConfig {
        &self.shared.config
    }

    /// The memory budget batches run in.
    pub fn budget(&self) -> &MemoryBudget {
        self.shared.batcher.budget()
    }

    /// The model's state.
    pub fn model_state(&self) -> ModelState {
        self.shared.embedder.state()
    }

    /// Whether the service takes work: open, and its worker alive. False
    /// once it is shut down or its worker failed (a health check should
    /// say so).
    pub fn is_serving(&self) -> bool {
        let q = self.shared.queue.lock();
        matches!(q.status, Status::Open) && !q.worker_exited
    }

    /// The error the service's worker failed with, if it did.
    pub fn failure(&self) -> Option<Error> {
        match &self.shared.queue.lock().status {
            Status::Closed(e @ Error::WorkerFailed { .. }) => Some(e.clone()),
            _ => None,
        }
    }

    /// A snapshot of what the service has done and where it stands.
    pub fn metrics(&self) -> ServiceMetrics {
        let (queued_requests, queued_tokens, serving) = {
            let q = self.shared.queue.lock();
            (
                q.requests.len(),
                q.tokens,
                matches!(q.status, Status::Open) && !q.worker_exited,
            )
        };
        let c = self.shared.counters.lock().clone();
        ServiceMetrics {
            queued_requests,
            queued_tokens,
            accepted: c.accepted,
            embeddings: c.embeddings,
            reranks: c.reranks,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
            refused: c.refused,
            batches: c.batches,
            texts: c.texts,
            tokens: c.tokens,
            batch_texts: c.batch_texts,
            batch_tokens: c.batch_tokens,
            batch_requests: c.batch_requests,
            queue_seconds: c.queue_seconds,
            inference_seconds: c.inference_seconds,
            panics: c.panics,
            batch_size: self.shared.batcher.metrics().batch_size,
            rerank_batch_size: self
                .shared
                .reranker
                .as_ref()
                .map(|(_, lane)| lane.metrics().batch_size),
            model: self.shared.embedder.state(),
            unloads: c.unloads,
            memory: self.shared.batcher.budget().read(),
            serving,
        }
    }

    /// Frees the model's weights (an embedder that can reload them, such
    /// as [`LazyEmbedder`](crate::LazyEmbedder)) once no batch is running;
    /// the next batch loads them again. Blocks until done and says what
    /// it gave back.
    pub fn unload(&self) -> UnloadReport {
        let shared = &self.shared;
        let mut q = shared.queue.lock();
        if q.worker_exited {
            drop(q);
            super::worker::unload(shared);
        } else {
            q.unloads_wanted += 1;
            let ticket = q.unloads_wanted;
            shared.work.notify_all();
            while q.unloads_done < ticket && !q.worker_exited {
                shared.done.wait(&mut q);
            }
        }
        shared.last_unload.lock().unwrap_or(UnloadReport {
            freed: false,
            rss_before_bytes: None,
            rss_after_bytes: None,
            figure_before_bytes: 0,
            figure_after_bytes: 0,
        })
    }

    /// Shuts the service down: stops admitting at once, lets the worker
    /// run what is queued for up to `deadline`, fails what remains with
    /// [`Error::Closed`], and waits for the worker to end (joining its
    /// thread when the builder started it). A batch running at the
    /// deadline finishes first. Every handle sees the service closed.
    pub fn shutdown(&self, deadline: Duration) {
        let shared = &self.shared;
        {
            let mut q = shared.queue.lock();
            if matches!(q.status, Status::Open | Status::Draining { until: None }) {
                q.status = Status::Draining {
                    until: Some(Instant::now() + deadline),
                };
            }
            shared.work.notify_all();
            while !q.worker_exited {
                shared.done.wait(&mut q);
            }
        }
        if let Some(thread) = shared.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

/// Builds an [`EmbedService`]: its budget, batch settings and limits.
#[must_use]
pub struct EmbedServiceBuilder {
    embedder: Arc<dyn Embedder>,
    reranker: Option<Arc<dyn Reranker>>,
    budget: Option<MemoryBudget>,
    batch: BatchConfig,
    config: ServiceConfig,
}

impl std::fmt::Debug for EmbedServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedServiceBuilder")
            .field("budget", &self.budget)
            .field("batch", &self.batch)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EmbedServiceBuilder {
    /// The memory budget batches run in (share it with anything else that
    /// guards memory in the process). Default: a budget with
    /// [`MemoryConfig::default`].
    pub fn budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// A cross-encoder for [`EmbedService::submit_rerank`]: its requests
    /// share the queue, the admission limits, the worker and the memory
    /// budget with embeddings. Default: none.
    pub fn reranker(mut self, reranker: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(reranker);
        self
    }

    /// Batch sizes and retries (for embeddings and reranking alike).
    /// Default [`BatchConfig::default`].
    pub fn batch(mut self, batch: BatchConfig) -> Self {
        self.batch = batch;
        self
    }

    /// Queue limits and timings. Default [`ServiceConfig::default`].
    pub fn config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    /// The service and its worker, for the caller to run on a thread of
    /// its choosing ([`Worker::run`]).
    ///
    /// # Errors
    ///
    /// As [`BatchEmbedder::new`](crate::BatchEmbedder::new).
    pub fn build(self) -> Result<(EmbedService, Worker)> {
        let budget = self
            .budget
            .unwrap_or_else(|| MemoryBudget::new(MemoryConfig::default()));
        let shared = Arc::new(Shared::new(
            self.embedder,
            self.reranker,
            budget,
            self.batch,
            self.config,
        )?);
        Ok((EmbedService::attach(shared.clone()), Worker::new(shared)))
    }

    /// The service, its worker running on a thread of its own
    /// (`membatch-worker`), joined by [`EmbedService::shutdown`].
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build); [`Error::ThreadPool`] when the thread
    /// cannot start.
    pub fn spawn(self) -> Result<EmbedService> {
        let (service, worker) = self.build()?;
        let thread = std::thread::Builder::new()
            .name("membatch-worker".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::ThreadPool {
                threads: 1,
                source: Arc::new(e),
            })?;
        *service.shared.thread.lock() = Some(thread);
        Ok(service)
    }
}
