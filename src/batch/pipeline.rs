//! [`BatchEmbedder`]: any input size, in batches that fit the memory budget.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::config::BatchConfig;
use super::cost::CostModel;
use super::metrics::{BatchMetrics, Progress};
use super::plan::{batch_len, Remaining};
use super::rule::BatchSizeRule;
use crate::embedder::{EmbedOptions, Embedder};
use crate::error::{Error, Result};
use crate::memory::{MemoryBudget, MemoryReading, WorkReport};
use crate::pressure::PressureLevel;

type Observer = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Embeds inputs of any size through an [`Embedder`], in batches sized by a
/// [`BatchSizeRule`] and a [`CostModel`] so that every batch fits the
/// [`MemoryBudget`].
///
/// A run tokenizes its texts once, a window of a few thousand at a time,
/// orders each window longest first (neighbours pad little), and for each
/// batch takes the most texts that the rule, the
/// token limit and the memory headroom allow. Each batch runs under a
/// [`MemoryGuard`](crate::memory::MemoryGuard); its measured peak refines
/// the cost model. When memory refuses a batch, the rule halves and the
/// same texts are planned again (none is lost or embedded twice); when not
/// even one text can fit, the run ends with [`Error::BudgetTooSmall`]; when
/// other work holds the memory one text needs, the batch waits for it as
/// the [`RetryPolicy`](super::RetryPolicy) says.
///
/// `&self` methods: one `BatchEmbedder` can serve several threads, which
/// share its rule, cost model and budget.
///
/// ```
/// use membatch::batch::{BatchConfig, BatchEmbedder};
/// use membatch::memory::{MemoryBudget, MemoryConfig};
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
/// let budget = MemoryBudget::new(MemoryConfig::default());
/// let batcher = BatchEmbedder::new(Length, budget, BatchConfig::default())?;
/// let texts: Vec<String> = (0..100).map(|i| "x".repeat(i)).collect();
/// let vectors = batcher.embed(&texts)?;
/// assert_eq!(vectors[42], vec![42.0]); // input order
/// assert!(batcher.metrics().batches >= 2);
/// # Ok::<(), membatch::Error>(())
/// ```
pub struct BatchEmbedder<E> {
    pub(super) embedder: E,
    pub(super) budget: MemoryBudget,
    pub(super) config: BatchConfig,
    pub(super) state: Mutex<State>,
    pub(super) observer: Option<Observer>,
}

/// What the batcher learns as it runs, shared by its callers.
#[derive(Debug)]
pub(super) struct State {
    pub(super) rule: BatchSizeRule,
    pub(super) cost: CostModel,
    pub(super) metrics: BatchMetrics,
    /// Runs in progress (callers between `stream` and the end of their
    /// stream): their memory (token counting, vectors) is transient.
    pub(super) runs: usize,
}

impl<E> fmt::Debug for BatchEmbedder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchEmbedder")
            .field("config", &self.config)
            .field("state", &*self.state.lock())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<E: Embedder> BatchEmbedder<E> {
    /// A pipeline over `embedder`, inside `budget`, sized by `config`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `max_batch_tokens` is below the
    /// embedder's `max_seq_length` (one long text could never run).
    pub fn new(embedder: E, budget: MemoryBudget, config: BatchConfig) -> Result<Self> {
        let info = embedder.info();
        let max_seq = info.max_seq_length;
        if let Some(max) = config.max_batch_tokens() {
            if max < max_seq {
                return Err(Error::invalid_config(
                    "max_batch_tokens",
                    max,
                    format!("must be at least the model's max_seq_length ({max_seq})"),
                ));
            }
        }
        let prior = info.cost_prior_or_guess();
        let rule = BatchSizeRule::new(&config);
        Ok(BatchEmbedder {
            embedder,
            budget,
            config,
            state: Mutex::new(State {
                rule,
                cost: CostModel::new(prior),
                metrics: BatchMetrics {
                    batch_size: rule.size(),
                    ..BatchMetrics::default()
                },
                runs: 0,
            }),
            observer: None,
        })
    }

    /// Calls `observer` after every batch (e.g. to draw a progress bar).
    #[must_use]
    pub fn with_progress(mut self, observer: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The backend.
    pub fn embedder(&self) -> &E {
        &self.embedder
    }

    /// The memory budget batches run in.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The batching settings.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// The cost model as calibrated so far.
    pub fn cost_model(&self) -> CostModel {
        self.state.lock().cost
    }

    /// What has been done so far.
    pub fn metrics(&self) -> BatchMetrics {
        let budget = self.budget.metrics();
        BatchMetrics {
            cleanups: budget.cleanups,
            peak_memory_bytes: budget.peak_figure_bytes,
            peak_rss_bytes: budget.peak_rss_bytes,
            ..self.state.lock().metrics
        }
    }

    /// Each text's tokens as the pipeline tokenizes them before embedding
    /// (truncated to the model's length, behind the embedder's default
    /// prompt): a huge text is cut to a prefix that truncates to the same
    /// tokens first, so its length costs no more than its bytes. For
    /// counting tokens (`len()`, `is_truncated()`).
    ///
    /// # Errors
    ///
    /// The embedder's tokenization errors.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<crate::embedder::Tokens>> {
        super::plan::tokenize(&self.embedder, texts)
    }

    /// Embeds `texts`, one vector per text in input order.
    ///
    /// Holds every vector until the end; for very large inputs prefer
    /// [`stream`](Self::stream) and write results out as they come.
    ///
    /// # Errors
    ///
    /// [`Error::BudgetTooSmall`] when one text cannot fit in the budget;
    /// [`Error::MemoryPressure`] when other work kept the memory one text
    /// needs for longer than the retry policy waits; the embedder's own
    /// errors.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        self.embed_with(texts, &EmbedOptions::default())
    }

    /// As [`embed`](Self::embed), embedding as `options` say (see
    /// [`stream_with`](Self::stream_with)).
    ///
    /// # Errors
    ///
    /// As [`stream_with`](Self::stream_with).
    pub fn embed_with<S: AsRef<str>>(
        &self,
        texts: &[S],
        options: &EmbedOptions,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); texts.len()];
        for batch in self.stream_with(texts, options)? {
            let batch = batch?;
            for (i, v) in batch.indices.into_iter().zip(batch.embeddings) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Room for the next batch: what keeps the figure at or below the
    /// cautious threshold, so planned work stays in the normal band, after
    /// the `reserved` bytes of other callers.
    fn planning_room(&self, reading: &MemoryReading, reserved: u64) -> u64 {
        let target =
            (reading.budget_bytes as f64 * self.budget.config().thresholds().cautious) as u64;
        target
            .saturating_sub(reading.figure_bytes)
            .saturating_sub(reserved)
    }

    /// How many of the `remaining` texts the next batch takes and the bytes
    /// it is predicted to need, by `reading` with `reserved` bytes held by
    /// other work: the most the rule, the token limit and the planning room
    /// allow, else one text when it fits the budget itself. `None` when not
    /// even one text fits now (or none is left).
    pub(super) fn plan(
        &self,
        remaining: Remaining,
        reading: &MemoryReading,
        reserved: u64,
    ) -> Option<(usize, u64)> {
        if remaining.texts == 0 {
            return None;
        }
        let padded = remaining.padded;
        let (rule, cost) = {
            let s = self.state.lock();
            (s.rule.size(), s.cost)
        };
        let room = self.planning_room(reading, reserved);
        let max_tokens = self.config.max_batch_tokens();
        if let Some(n) = batch_len(remaining, rule, &cost, room, max_tokens) {
            return Some((n, cost.estimate(n, padded)));
        }
        let one = cost.estimate(1, padded);
        // Room up to the budget itself, for a lone text that does not fit
        // the planning room.
        let full_room = reading.headroom_bytes().saturating_sub(reserved);
        (one <= full_room).then_some((1, one))
    }

    /// The error for a text of `tokens` tokens that cannot fit even alone.
    pub(super) fn too_small(&self, reading: &MemoryReading, tokens: usize) -> Error {
        let one = self.state.lock().cost.estimate(1, tokens);
        Error::BudgetTooSmall {
            needed: reading.figure_bytes.saturating_add(one),
            budget: reading.budget_bytes,
            in_use: reading.figure_bytes,
            tokens,
        }
    }

    /// Memory refused a batch of `n` texts: halve it and count a retry.
    pub(super) fn on_refused(&self, n: usize, why: &Error) {
        let mut s = self.state.lock();
        let before = s.rule.size();
        let after = s.rule.on_pressure_after(n);
        s.metrics.retries += 1;
        s.metrics.shrinks += 1;
        s.metrics.batch_size = after;
        tracing::warn!(texts = n, %why, "memory pressure detected: retrying smaller");
        tracing::info!(from = before, to = after, "batch size reduced");
    }

    /// Learns from a finished batch (unless `learn` is false: its peak was
    /// not the batch's own) and moves the rule.
    pub(super) fn on_done(
        &self,
        n: usize,
        padded: usize,
        tokens: usize,
        peak_level: PressureLevel,
        report: &WorkReport,
        learn: bool,
    ) {
        let mut s = self.state.lock();
        // With other work running at the same time the peak is not this
        // batch's alone: do not learn from it.
        if learn && !report.overlapped {
            s.cost.observe(n, padded, report.rise_bytes);
        }
        let before = s.rule.size();
        let after = match peak_level {
            PressureLevel::Normal => s.rule.on_success(),
            PressureLevel::Cautious => before,
            PressureLevel::Degraded | PressureLevel::Critical => {
                s.metrics.shrinks += 1;
                let after = s.rule.on_pressure_after(n);
                tracing::info!(from = before, to = after, level = %peak_level, "batch size reduced");
                after
            }
        };
        let m = &mut s.metrics;
        m.batch_size = after;
        m.batches += 1;
        m.texts += n as u64;
        m.tokens += tokens as u64;
        m.padded_tokens += (n * padded) as u64;
    }
}
