//! [`BatchEmbedder`]: any input size, in batches that fit the memory budget.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cost::CostModel;
use super::plan::{batch_len, bounded_len, longest_first};
use super::rule::{AdaptiveBatcher, BatchConfig};
use crate::error::{Error, Result};
use crate::memory::{MemoryBudget, MemoryReading, PressureLevel, WorkReport};
use crate::{Embedder, ModelShape};

/// Texts are counted in chunks of this many, so that a million inputs never
/// hold a million tokenizer encodings at once.
const COUNT_CHUNK: usize = 1024;
/// While other work holds reservations, a batch that cannot fit waits this
/// long between looks...
const WAIT_STEP: Duration = Duration::from_millis(20);
/// ...and gives up with [`Error::MemoryPressure`] after this many looks.
const MAX_WAITS: u32 = 500;

/// Where a run stands, handed to the progress observer after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Texts embedded so far in this run.
    pub done: usize,
    /// Texts in this run.
    pub total: usize,
    /// Texts in the batch just finished.
    pub batch_size: usize,
    /// The memory figure after the batch (see [`MemoryReading::figure_bytes`]).
    pub memory_bytes: u64,
    /// Texts per second of this run so far.
    pub texts_per_second: f64,
}

/// A snapshot of what a [`BatchEmbedder`] has done so far (all runs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchMetrics {
    /// The size the batch-size rule allows next.
    pub batch_size: usize,
    /// Batches embedded.
    pub batches: u64,
    /// Texts embedded.
    pub texts: u64,
    /// Real tokens embedded (special tokens included).
    pub tokens: u64,
    /// Tokens run through the model, padding included.
    pub padded_tokens: u64,
    /// Batches planned again smaller after memory refused them.
    pub retries: u64,
    /// Times memory pressure halved the batch size.
    pub shrinks: u64,
    /// Memory cleanups forced by the budget (shared with its other users).
    pub cleanups: u64,
    /// The highest memory figure seen by the budget, in bytes.
    pub peak_memory_bytes: u64,
    /// The highest process RSS seen by the budget, in bytes.
    pub peak_rss_bytes: u64,
    /// Time spent planning and embedding, summed over callers (with several
    /// threads embedding at once it exceeds the wall-clock time).
    pub busy: Duration,
}

impl BatchMetrics {
    /// Padded tokens per real token (1.0 is no padding at all).
    pub fn padding_ratio(&self) -> f64 {
        if self.tokens == 0 {
            1.0
        } else {
            self.padded_tokens as f64 / self.tokens as f64
        }
    }

    /// Texts per second of busy time (per caller, with several callers).
    pub fn texts_per_second(&self) -> f64 {
        per_second(self.texts as usize, self.busy)
    }
}

fn per_second(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// One batch of results from [`BatchEmbedder::stream`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedBatch {
    /// The input index of each text in this batch.
    pub indices: Vec<usize>,
    /// One vector per text, in the order of `indices`.
    pub embeddings: Vec<Vec<f32>>,
}

type Observer = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Embeds inputs of any size through an [`Embedder`], in batches sized by an
/// [`AdaptiveBatcher`] and a [`CostModel`] so that every batch fits the
/// [`MemoryBudget`].
///
/// For each run it counts tokens, orders texts longest first (neighbours
/// pad little), and for each batch takes the most texts that the rule, the
/// token limit and the memory headroom allow. Each batch runs under a
/// [`MemoryGuard`](crate::MemoryGuard); its measured peak refines the cost
/// model. When memory refuses a batch, the rule halves and the same texts
/// are planned again (none is lost or embedded twice); when not even one
/// text can fit, the run ends with [`Error::BudgetTooSmall`].
///
/// `&self` methods: one `BatchEmbedder` can serve several threads, which
/// share its rule, cost model and budget.
///
/// ```
/// use membatch::batch::{BatchConfig, BatchEmbedder};
/// use membatch::memory::{MemoryBudget, MemoryConfig};
/// use membatch::{Embedder, Result};
///
/// struct Length; // a toy backend: one dimension, the text's length
/// impl Embedder for Length {
///     fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
///         Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
///     }
///     fn dimension(&self) -> usize { 1 }
///     fn max_seq_length(&self) -> usize { 512 }
///     fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
///         Ok(texts.iter().map(|t| t.len().min(512)).collect())
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
    embedder: E,
    budget: MemoryBudget,
    config: BatchConfig,
    state: Mutex<State>,
    observer: Option<Observer>,
}

#[derive(Debug)]
struct State {
    batcher: AdaptiveBatcher,
    cost: CostModel,
    metrics: BatchMetrics,
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
        let max_seq = embedder.max_seq_length();
        if let Some(max) = config.max_batch_tokens {
            if max < max_seq {
                return Err(Error::invalid_config(
                    "max_batch_tokens",
                    max,
                    format!("must be at least the model's max_seq_length ({max_seq})"),
                ));
            }
        }
        let shape = embedder
            .shape()
            .unwrap_or_else(|| ModelShape::guess_from_dimension(embedder.dimension()));
        let batcher = AdaptiveBatcher::new(&config);
        Ok(BatchEmbedder {
            embedder,
            budget,
            config,
            state: Mutex::new(State {
                batcher,
                cost: CostModel::new(shape),
                metrics: BatchMetrics {
                    batch_size: batcher.size(),
                    ..BatchMetrics::default()
                },
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

    /// Embeds `texts`, one vector per text in input order.
    ///
    /// Holds every vector until the end; for very large inputs prefer
    /// [`stream`](Self::stream) and write results out as they come.
    ///
    /// # Errors
    ///
    /// [`Error::BudgetTooSmall`] when one text cannot fit in the budget;
    /// [`Error::MemoryPressure`] when other work kept the budget full for
    /// too long; the embedder's own errors.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); texts.len()];
        for batch in self.stream(texts)? {
            let batch = batch?;
            for (i, v) in batch.indices.into_iter().zip(batch.embeddings) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Counts tokens and returns an iterator of batches, each with the input
    /// indices of its texts, in the order they are embedded (longest first).
    ///
    /// The texts are counted and ordered up front (a few bytes per text);
    /// the vectors are handed out batch by batch, so the caller can write
    /// them out instead of holding them all. Nothing is embedded until the
    /// iterator is advanced; after an error it yields nothing more.
    ///
    /// # Errors
    ///
    /// The embedder's tokenization errors.
    pub fn stream<'a, S: AsRef<str>>(&'a self, texts: &'a [S]) -> Result<BatchStream<'a, E, S>> {
        let max_seq = self.embedder.max_seq_length();
        let mut ends = Vec::with_capacity(texts.len());
        let mut counts = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(COUNT_CHUNK) {
            let mut slices = Vec::with_capacity(chunk.len());
            for t in chunk {
                let t = t.as_ref();
                let end = bounded_len(&self.embedder, t, max_seq)?;
                ends.push(end);
                slices.push(&t[..end]);
            }
            let chunk_counts = self.embedder.token_counts(&slices)?;
            if chunk_counts.len() != slices.len() {
                return Err(Error::Tokenization(crate::error::boxed(
                    std::io::Error::other(format!(
                        "the embedder returned {} token counts for {} texts",
                        chunk_counts.len(),
                        slices.len()
                    )),
                )));
            }
            counts.extend(chunk_counts);
        }
        let order = longest_first(&counts);
        let counts = order.iter().map(|&i| counts[i]).collect();
        tracing::info!(texts = texts.len(), "embedding texts");
        Ok(BatchStream {
            owner: self,
            texts,
            ends,
            order,
            counts,
            pos: 0,
            batches: 0,
            busy: Duration::ZERO,
            failed: false,
        })
    }

    /// Room for the next batch: what keeps the figure at or below the
    /// cautious threshold, so planned work stays in the normal band, after
    /// the `reserved` bytes of other callers.
    fn planning_room(&self, reading: &MemoryReading, reserved: u64) -> u64 {
        let target =
            (reading.budget_bytes as f64 * self.budget.config().thresholds.cautious) as u64;
        target
            .saturating_sub(reading.figure_bytes)
            .saturating_sub(reserved)
    }

    fn too_small(&self, reading: &MemoryReading, tokens: usize) -> Error {
        let one = self.state.lock().cost.estimate(1, tokens);
        Error::BudgetTooSmall {
            needed: reading.figure_bytes.saturating_add(one),
            budget: reading.budget_bytes,
            in_use: reading.figure_bytes,
            tokens,
        }
    }

    /// Decides how many of `remaining` (token counts, longest first) the
    /// next batch takes and the bytes it is predicted to need, cleaning up
    /// and waiting for other work when needed. Returns the reading it
    /// planned with, for [`MemoryBudget::acquire_after`].
    fn plan(&self, remaining: &[usize]) -> Result<(usize, u64, MemoryReading)> {
        let padded = remaining[0];
        let mut waits = 0;
        let mut cleaned = false;
        let mut reading = self.budget.read();
        loop {
            let (rule, cost) = {
                let s = self.state.lock();
                (s.batcher.size(), s.cost)
            };
            let reserved = self.budget.metrics().reserved_bytes;
            let room = self.planning_room(&reading, reserved);
            if let Some(n) = batch_len(remaining, rule, &cost, room, self.config.max_batch_tokens) {
                return Ok((n, cost.estimate(n, padded), reading));
            }
            let one = cost.estimate(1, padded);
            // Room up to the budget itself, for a lone text that does not
            // fit the planning room.
            let full_room = reading.headroom_bytes().saturating_sub(reserved);
            if one <= full_room {
                return Ok((1, one, reading));
            }
            if !cleaned {
                cleaned = true;
                reading = self.budget.cleanup();
                continue;
            }
            if reserved == 0 {
                return Err(self.too_small(&reading, padded));
            }
            // Other work holds reservations that will be released.
            waits += 1;
            if waits > MAX_WAITS {
                return Err(Error::MemoryPressure {
                    needed: one,
                    available: full_room,
                    level: reading.level,
                });
            }
            std::thread::sleep(WAIT_STEP);
            cleaned = false;
            reading = self.budget.read();
        }
    }

    /// Memory refused a batch of `n` texts: halve it and count a retry.
    fn on_refused(&self, n: usize, why: &Error) {
        let mut s = self.state.lock();
        let before = s.batcher.size();
        let after = s.batcher.on_pressure_after(n);
        s.metrics.retries += 1;
        s.metrics.shrinks += 1;
        s.metrics.batch_size = after;
        tracing::warn!(texts = n, %why, "memory pressure detected: retrying smaller");
        tracing::info!(from = before, to = after, "batch size reduced");
    }

    /// Learns from a finished batch and moves the rule.
    fn on_done(
        &self,
        n: usize,
        padded: usize,
        tokens: usize,
        peak_level: PressureLevel,
        report: &WorkReport,
    ) {
        let mut s = self.state.lock();
        // With other work running at the same time the peak is not this
        // batch's alone: do not learn from it.
        if !report.overlapped {
            s.cost.observe(n, padded, report.peak_bytes);
        }
        let before = s.batcher.size();
        let after = match peak_level {
            PressureLevel::Normal => s.batcher.on_success(),
            PressureLevel::Cautious => before,
            PressureLevel::Degraded | PressureLevel::Critical => {
                s.metrics.shrinks += 1;
                let after = s.batcher.on_pressure_after(n);
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

/// The batches of one run; see [`BatchEmbedder::stream`].
pub struct BatchStream<'a, E, S> {
    owner: &'a BatchEmbedder<E>,
    texts: &'a [S],
    /// Byte length of each text after the bounded-prefix cut, by input index.
    ends: Vec<usize>,
    /// Input indices, longest first.
    order: Vec<usize>,
    /// Token counts in `order`.
    counts: Vec<usize>,
    pos: usize,
    batches: usize,
    busy: Duration,
    failed: bool,
}

impl<E, S> fmt::Debug for BatchStream<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchStream")
            .field("done", &self.pos)
            .field("total", &self.order.len())
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

impl<E: Embedder, S: AsRef<str>> BatchStream<'_, E, S> {
    /// Adds the time since `started` to this run's and the owner's busy time.
    fn spent(&mut self, started: Instant) {
        let d = started.elapsed();
        self.busy += d;
        self.owner.state.lock().metrics.busy += d;
    }

    /// Texts in this run.
    pub fn total(&self) -> usize {
        self.order.len()
    }

    /// Texts embedded so far in this run.
    pub fn done(&self) -> usize {
        self.pos
    }

    fn next_batch(&mut self) -> Result<EmbeddedBatch> {
        let owner = self.owner;
        let mut waits = 0;
        loop {
            let started = Instant::now();
            let remaining = &self.counts[self.pos..];
            let (n, estimate, reading) = owner.plan(remaining)?;
            let padded = remaining[0];
            let guard = match owner.budget.acquire_after(reading, estimate) {
                Ok(g) => g,
                Err(e @ Error::MemoryPressure { .. }) => {
                    self.spent(started);
                    if n > 1 {
                        owner.on_refused(n, &e);
                        continue;
                    }
                    // One text, refused: the room went to another caller
                    // between planning and asking; wait for it, or give up.
                    if owner.budget.metrics().reserved_bytes == 0 {
                        return Err(owner.too_small(&owner.budget.read(), padded));
                    }
                    waits += 1;
                    if waits > MAX_WAITS {
                        return Err(e);
                    }
                    std::thread::sleep(WAIT_STEP);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let indices = self.order[self.pos..self.pos + n].to_vec();
            let texts: Vec<&str> = indices
                .iter()
                .map(|&i| &self.texts[i].as_ref()[..self.ends[i]])
                .collect();
            tracing::debug!(
                batch = self.batches + 1,
                texts = n,
                padded_tokens = padded,
                estimate,
                done = self.pos,
                total = self.order.len(),
                "processing batch"
            );
            let result = owner.embedder.embed(&texts);
            let report = guard.finish();
            self.spent(started);
            let embeddings = match result {
                Ok(v) if v.len() == n => v,
                Ok(v) => {
                    return Err(Error::Inference(crate::error::boxed(
                        std::io::Error::other(format!(
                            "the embedder returned {} vectors for {n} texts",
                            v.len()
                        )),
                    )))
                }
                Err(e @ Error::MemoryPressure { .. }) if n > 1 => {
                    owner.on_refused(n, &e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let peak_figure = report.figure_before_bytes.saturating_add(report.peak_bytes);
            let peak_level = PressureLevel::for_fraction(
                peak_figure as f64 / report.budget_bytes.max(1) as f64,
                &owner.budget.config().thresholds,
            );
            let tokens = self.counts[self.pos..self.pos + n].iter().sum();
            owner.on_done(n, padded, tokens, peak_level, &report);
            self.pos += n;
            self.batches += 1;
            if let Some(observer) = &owner.observer {
                observer(&Progress {
                    done: self.pos,
                    total: self.order.len(),
                    batch_size: n,
                    memory_bytes: report.figure_after_bytes,
                    texts_per_second: per_second(self.pos, self.busy),
                });
            }
            if self.pos == self.order.len() {
                tracing::info!(
                    texts = self.pos,
                    batches = self.batches,
                    seconds = self.busy.as_secs_f64(),
                    "completed texts"
                );
            }
            return Ok(EmbeddedBatch {
                indices,
                embeddings,
            });
        }
    }
}

impl<E: Embedder, S: AsRef<str>> Iterator for BatchStream<'_, E, S> {
    type Item = Result<EmbeddedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.order.len() {
            return None;
        }
        let result = self.next_batch();
        self.failed = result.is_err();
        Some(result)
    }
}
