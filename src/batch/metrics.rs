//! What a [`BatchEmbedder`](super::BatchEmbedder) reports: [`Progress`]
//! after each batch and a [`BatchMetrics`] snapshot.

use std::time::Duration;

/// Where a run stands, handed to the progress observer after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Texts embedded so far in this run.
    pub done: usize,
    /// Texts in this run.
    pub total: usize,
    /// Texts in the batch just finished.
    pub batch_size: usize,
    /// The memory figure after the batch (see
    /// [`MemoryReading::figure_bytes`](crate::memory::MemoryReading::figure_bytes)).
    pub memory_bytes: u64,
    /// Texts per second of this run so far.
    pub texts_per_second: f64,
}

/// A snapshot of what a [`BatchEmbedder`](super::BatchEmbedder) has done so
/// far (all runs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchMetrics {
    /// The size the batch-size rule allows next.
    pub batch_size: usize,
    /// Batches embedded.
    pub batches: u64,
    /// Texts embedded.
    pub texts: u64,
    /// Real tokens embedded (special tokens included).
    pub tokens: u64,
    /// Tokens the batches were planned for: each batch's size times its
    /// longest text (what a padded forward pass would run).
    pub padded_tokens: u64,
    /// Batches planned again smaller after memory refused them.
    pub retries: u64,
    /// Times memory pressure halved the batch size.
    pub shrinks: u64,
    /// Times a batch waited for memory other work held.
    pub waits: u64,
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
    /// Planned (padded) tokens per real token (1.0 is no padding at all).
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

/// `n` per second of `d` (0 for no time).
pub(super) fn per_second(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}
