//! The [`Worker`]: the one thread that owns the model's forward passes. It
//! takes requests from the queue in FIFO windows, runs their texts in
//! length-ordered batches sized by the memory prediction, and answers
//! every request it took exactly once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_channel::oneshot;
use parking_lot::MutexGuard;

use super::metrics::{Kind, UnloadReport};
use super::pending::Answer;
use super::queue::{Queue, Request, Shared, Status};
use crate::batch::{panic_message, BatchEmbedder, Failed};
use crate::embedder::{Embedder, Tokens};
use crate::error::Error;

/// The service's worker, handed back by
/// [`EmbedServiceBuilder::build`](super::EmbedServiceBuilder::build) so the
/// caller can run it on a thread of its choosing (as tower's
/// `Buffer::pair` hands back its worker); [`spawn`](super::EmbedServiceBuilder::spawn)
/// runs it on a thread of its own.
///
/// Dropping it without running it closes the service: every request gets
/// [`Error::WorkerFailed`] at once instead of waiting for a worker that
/// never comes.
#[must_use = "the service answers nothing until its worker runs"]
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    ran: bool,
}

/// One request taken into a window: its answer as it fills.
struct Slot {
    request: Request,
    /// Where the answer goes; taken when it is sent.
    tx: Option<oneshot::Sender<Answer>>,
    results: Vec<Option<Vec<f32>>>,
    remaining: usize,
    /// Answered (or given up by its caller): nothing more runs for it.
    done: bool,
}

impl Slot {
    /// Sends the request's answer (once) and marks it done; true when its
    /// caller was still there to receive it.
    fn answer(&mut self, answer: Answer) -> bool {
        self.done = true;
        self.tx.take().is_some_and(|tx| tx.send(answer).is_ok())
    }

    /// Whether the caller gave up (dropped its answer).
    fn given_up(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_canceled())
    }
}

/// One text of a window: which request, which of its texts, its tokens.
#[derive(Clone, Copy)]
struct Item {
    slot: usize,
    text: usize,
    tokens: usize,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Worker { shared, ran: false }
    }

    /// Serves requests until the service shuts down or fails. Every
    /// request it took is answered, also when a batch fails or the worker
    /// itself cannot go on.
    pub fn run(mut self) {
        self.ran = true;
        let shared = self.shared.clone();
        let mut window: Vec<Slot> = Vec::new();
        tracing::debug!("service worker started");
        let end = match catch_unwind(AssertUnwindSafe(|| serve(&shared, &mut window))) {
            Ok(end) => end,
            Err(panic) => Error::WorkerFailed {
                cause: Arc::new(Error::EmbedderPanicked {
                    message: format!("the worker panicked: {}", panic_message(panic.as_ref())),
                }),
            },
        };
        match &end {
            Error::Closed => tracing::info!("service worker stopped"),
            e => tracing::error!(error = %e.report(), "service worker failed"),
        }
        // Whatever was in flight gets the end's error, then everything
        // queued, then every later caller.
        fail_window(&shared, &mut window, &end);
        shared.close(end);
        shared.queue.lock().worker_exited = true;
        shared.done.notify_all();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.ran {
            self.shared.close(Error::WorkerFailed {
                cause: Arc::new(Error::Closed),
            });
            self.shared.queue.lock().worker_exited = true;
            self.shared.done.notify_all();
        }
    }
}

/// The worker's loop; returns why it stopped ([`Error::Closed`] for a
/// shutdown).
fn serve(shared: &Shared, window: &mut Vec<Slot>) -> Error {
    // Panics in a row, per lane: a reranker that keeps panicking fails
    // its own requests, never the embeddings.
    let (mut embed_panics, mut rerank_panics) = (0u32, 0u32);
    loop {
        let taken = match next_window(shared) {
            Ok(taken) => taken,
            Err(end) => return end,
        };
        *window = taken;
        let outcome = match (window[0].request.kind, &shared.reranker) {
            (Kind::Embed, _) => run_window(shared, &shared.batcher, window, &mut embed_panics),
            (Kind::Rerank, Some((_, lane))) => run_window(shared, lane, window, &mut rerank_panics),
            // Admission refuses reranks without a reranker; should one get
            // here, it is answered, not run through the embedder.
            (Kind::Rerank, None) => {
                fail_window(shared, window, &no_reranker());
                Ok(())
            }
        };
        window.clear();
        {
            let mut q = shared.queue.lock();
            q.running = false;
            q.last_activity = Instant::now();
        }
        shared.done.notify_all();
        if let Err(end) = outcome {
            return end;
        }
    }
}

/// Waits for requests (unloading when asked, or when idle long enough),
/// then takes the next FIFO window of them. `Err` when the worker should
/// stop.
fn next_window(shared: &Shared) -> Result<Vec<Slot>, Error> {
    let config = &shared.config;
    let mut q = shared.queue.lock();
    loop {
        if q.unloads_wanted > q.unloads_done {
            let ticket = q.unloads_wanted;
            MutexGuard::unlocked(&mut q, || unload(shared));
            q.unloads_done = ticket;
            shared.done.notify_all();
            continue;
        }
        match q.status {
            Status::Closed(ref e) => return Err(e.clone()),
            Status::Draining { until } => {
                let late = until.is_some_and(|u| Instant::now() >= u);
                if q.requests.is_empty() || late {
                    return Err(Error::Closed);
                }
            }
            Status::Open => {}
        }
        if !q.requests.is_empty() {
            break;
        }
        match config.idle_unload() {
            Some(idle) if shared.embedder.state().is_loaded() => {
                let due = q.last_activity + idle;
                if Instant::now() >= due && q.submitting == 0 {
                    tracing::info!(idle_seconds = idle.as_secs_f64(), "unloading an idle model");
                    MutexGuard::unlocked(&mut q, || unload(shared));
                    continue;
                }
                shared.work.wait_until(&mut q, due);
            }
            _ => shared.work.wait(&mut q),
        }
    }
    // An idle queue may wait a little for company; a busy one never
    // waits (requests gathered while the last batch ran).
    let wait = config.batch_wait();
    if !wait.is_zero() {
        let rule = shared.batcher.metrics().batch_size;
        let until = Instant::now() + wait;
        while q.texts < rule && matches!(q.status, Status::Open) {
            if shared.work.wait_until(&mut q, until).timed_out() {
                break;
            }
        }
    }
    Ok(take_window(&mut q, config.window_texts()))
}

/// The oldest requests of one kind (the oldest request's), up to `limit`
/// texts (always at least one request): FIFO, so a request of the other
/// kind waits for the next window, never longer.
fn take_window(q: &mut Queue, limit: usize) -> Vec<Slot> {
    let mut window: Vec<Slot> = Vec::new();
    let mut texts = 0;
    while let Some(next) = q.requests.front() {
        let other_kind = window.first().is_some_and(|w| w.request.kind != next.kind);
        if !window.is_empty() && (other_kind || texts + next.texts.len() > limit) {
            break;
        }
        let mut request = q.requests.pop_front().expect("front exists");
        texts += request.texts.len();
        q.tokens -= request.tokens;
        q.texts -= request.texts.len();
        window.push(Slot {
            tx: request.tx.take(),
            results: vec![None; request.texts.len()],
            remaining: request.texts.len(),
            done: false,
            request,
        });
    }
    q.running = true;
    window
}

/// Runs every text of the window's requests, longest first, in batches the
/// batcher sizes; answers each request as soon as its last text is done,
/// or with the error of the batch that failed it. `Err` when the worker
/// must stop (too many panics in a row).
fn run_window<E: Embedder>(
    shared: &Shared,
    lane: &BatchEmbedder<E>,
    window: &mut [Slot],
    panics: &mut u32,
) -> Result<(), Error> {
    let kind = window[0].request.kind;
    let started = Instant::now();
    {
        let mut c = shared.counters.lock();
        for slot in window.iter() {
            c.queue_seconds
                .observe(started.duration_since(slot.request.arrived).as_secs_f64());
        }
    }
    let mut items: Vec<Item> = window
        .iter()
        .enumerate()
        .flat_map(|(slot, s)| {
            s.request
                .texts
                .iter()
                .enumerate()
                .map(move |(text, t)| Item {
                    slot,
                    text,
                    tokens: t.len(),
                })
        })
        .collect();
    // Longest first, within the window only: nothing waits behind texts
    // that arrived after the window was taken.
    items.sort_by_key(|it| std::cmp::Reverse(it.tokens));
    while !items.is_empty() {
        if drop_given_up(shared, window) {
            items.retain(|it| !window[it.slot].done);
            if items.is_empty() {
                break;
            }
        }
        let texts: Vec<&Tokens> = items
            .iter()
            .map(|it| &window[it.slot].request.texts[it.text])
            .collect();
        // Numbered within the process: a request's log lines name the
        // batches that ran its texts (below), a batch's lines its number.
        static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);
        let number = NEXT_BATCH.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "batch",
            number,
            texts = tracing::field::Empty,
            requests = tracing::field::Empty,
            tokens = tracing::field::Empty
        );
        let _entered = span.enter();
        let batch_started = Instant::now();
        match lane.embed_next_or_fail(&texts) {
            Ok(ran) => {
                *panics = 0;
                let n = ran.texts;
                let done = &items[..n];
                let tokens: usize = done.iter().map(|it| it.tokens).sum();
                let mut requests: Vec<usize> = done.iter().map(|it| it.slot).collect();
                requests.sort_unstable();
                requests.dedup();
                span.record("texts", n);
                span.record("requests", requests.len());
                span.record("tokens", tokens);
                shared.counters.lock().batch(
                    kind,
                    n,
                    tokens,
                    requests.len(),
                    batch_started.elapsed(),
                );
                for (it, v) in done.iter().zip(ran.embeddings) {
                    let slot = &mut window[it.slot];
                    slot.results[it.text] = Some(v);
                    slot.remaining -= 1;
                }
                for r in requests {
                    let texts = done.iter().filter(|it| it.slot == r).count();
                    window[r].request.span.in_scope(|| {
                        tracing::debug!(batch = number, texts, "texts ran in a batch");
                    });
                    answer_if_complete(shared, &mut window[r]);
                }
                items.drain(..n);
            }
            Err(Failed { texts: n, error }) => {
                let fatal = matches!(error, Error::EmbedderPanicked { .. });
                if fatal {
                    *panics += 1;
                    shared.counters.lock().panics += 1;
                }
                tracing::warn!(error = %error.report(), texts = n, "a batch failed: its requests get the error");
                // Only the embedding lane's panics stop the worker: the
                // reranker's fail their own requests.
                let gives_up = fatal
                    && kind == Kind::Embed
                    && *panics >= shared.config.max_consecutive_panics();
                let end = gives_up.then(|| Error::WorkerFailed {
                    cause: Arc::new(error.clone()),
                });
                if let Some(end) = &end {
                    // Closed before these callers are answered, so one that
                    // has its error finds the service failed (its health,
                    // its next call), never still serving.
                    shared.close(end.clone());
                }
                let mut c = shared.counters.lock();
                for it in &items[..n.min(items.len())] {
                    let slot = &mut window[it.slot];
                    if !slot.done {
                        c.failed += u64::from(slot.answer(Err(error.clone())));
                    }
                }
                drop(c);
                items.retain(|it| !window[it.slot].done);
                if let Some(end) = end {
                    return Err(end);
                }
            }
        }
    }
    Ok(())
}

/// Answers every request of `window` not yet answered with `error`. The
/// counters stay locked while answering, so a caller that has its answer
/// always finds it counted.
fn fail_window(shared: &Shared, window: &mut [Slot], error: &Error) {
    let mut c = shared.counters.lock();
    for slot in window.iter_mut().filter(|s| !s.done) {
        c.failed += u64::from(slot.answer(Err(error.clone())));
    }
}

/// The error for a rerank request to a service without a reranker.
pub(crate) fn no_reranker() -> Error {
    Error::invalid_config(
        "reranker",
        "none",
        "this service has no reranker: give one to EmbedServiceBuilder::reranker",
    )
}

/// Marks the requests whose callers gave up; true when there were any.
fn drop_given_up(shared: &Shared, window: &mut [Slot]) -> bool {
    let mut gone = 0;
    for slot in window.iter_mut().filter(|s| !s.done) {
        if slot.given_up() {
            slot.done = true;
            gone += 1;
        }
    }
    if gone > 0 {
        tracing::debug!(requests = gone, "callers gave up: their texts are skipped");
        shared.counters.lock().cancelled += gone;
    }
    gone > 0
}

/// Sends a request its vectors once every text is embedded.
fn answer_if_complete(shared: &Shared, slot: &mut Slot) {
    if slot.done || slot.remaining > 0 {
        return;
    }
    let vectors: Vec<Vec<f32>> = slot
        .results
        .iter_mut()
        .map(|v| v.take().expect("every text embedded"))
        .collect();
    // Locked before answering: a caller that has its vectors always
    // finds its request counted as completed.
    let mut c = shared.counters.lock();
    let delivered = slot.answer(Ok(vectors));
    if delivered {
        c.completed += 1;
    } else {
        c.cancelled += 1;
    }
}

/// Unloads the model, measuring what it gave back.
pub(crate) fn unload(shared: &Shared) {
    let budget = shared.batcher.budget();
    let probe = budget.probe();
    let before = probe.snapshot();
    let figure_before = budget.read().figure_bytes;
    let freed = shared.embedder.unload();
    let after = probe.snapshot();
    let figure_after = budget.read().figure_bytes;
    let report = UnloadReport {
        freed,
        rss_before_bytes: before.rss_bytes,
        rss_after_bytes: after.rss_bytes,
        figure_before_bytes: figure_before,
        figure_after_bytes: figure_after,
    };
    if freed {
        shared.counters.lock().unloads += 1;
        tracing::info!(?report, "model unloaded");
    }
    *shared.last_unload.lock() = Some(report);
}
