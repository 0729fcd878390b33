//! The batch-size rule ([`BatchSizeRule`], the design's adaptive batcher).

use super::config::BatchConfig;

/// The batch-size rule, as a plain value: no clock, no memory reads.
/// (The design calls it the *adaptive batcher*. The batcher that runs
/// texts through it is [`BatchEmbedder`](super::BatchEmbedder).)
///
/// Starts at `min_batch_size`; each successful batch adds `step`, up to
/// `max_batch_size`; memory pressure halves the size, never below one.
/// After pressure, growth resumes by `step` from wherever it landed. With
/// adaptation off, the size is `max_batch_size` except while memory
/// pressure holds it lower.
///
/// ```
/// use membatch::batch::{BatchConfig, BatchSizeRule};
///
/// let mut b = BatchSizeRule::new(&BatchConfig::default());
/// assert_eq!(b.size(), 8);
/// assert_eq!(b.on_success(), 12);
/// assert_eq!(b.on_success(), 16);
/// assert_eq!(b.on_pressure(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(alias = "AdaptiveBatcher")]
pub struct BatchSizeRule {
    size: usize,
    min: usize,
    max: usize,
    step: usize,
    adaptive: bool,
}

impl BatchSizeRule {
    /// The rule at its starting size.
    pub fn new(config: &BatchConfig) -> Self {
        // A BatchConfig is validated when built: sizes are at least one and
        // the minimum is at most the maximum.
        let (min, max) = (config.min_batch_size(), config.max_batch_size());
        BatchSizeRule {
            size: if config.adaptive() { min } else { max },
            min,
            max,
            step: config.step(),
            adaptive: config.adaptive(),
        }
    }

    /// The size the next batch may have.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A batch succeeded without pressure: grow by `step` (up to the
    /// maximum), or return to the fixed size. Returns the new size.
    pub fn on_success(&mut self) -> usize {
        self.size = if self.adaptive {
            self.size.saturating_add(self.step).min(self.max)
        } else {
            self.max
        };
        self.size
    }

    /// Memory pressure: halve, never below one. Returns the new size.
    pub fn on_pressure(&mut self) -> usize {
        self.on_pressure_after(self.size)
    }

    /// Memory pressure caused by a batch of `batch` texts, which memory or
    /// token limits may have made smaller than the rule's size: halve that
    /// batch (never below one), so the next one is really smaller.
    pub fn on_pressure_after(&mut self, batch: usize) -> usize {
        self.size = (self.size.min(batch) / 2).max(1);
        self.size
    }

    /// Whether the size is below its normal floor (pressure took it there).
    pub fn is_shrunk(&self) -> bool {
        self.size < if self.adaptive { self.min } else { self.max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_step_to_the_maximum_and_halves_on_pressure() {
        let mut b = BatchSizeRule::new(&BatchConfig::default());
        let mut trace = vec![b.size()];
        while b.size() < 64 {
            trace.push(b.on_success());
        }
        assert_eq!(
            trace,
            [8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64]
        );
        assert_eq!(b.on_success(), 64, "stays at the maximum");
        let halves: Vec<_> = (0..8).map(|_| b.on_pressure()).collect();
        assert_eq!(halves, [32, 16, 8, 4, 2, 1, 1, 1], "never below one");
        assert!(b.is_shrunk());
        assert_eq!(b.on_success(), 5, "growth resumes by step");
        let mut b = BatchSizeRule::new(&BatchConfig::default());
        b.on_success();
        assert_eq!(
            b.on_pressure_after(5),
            2,
            "halves the batch that ran, not the rule"
        );
        assert_eq!(b.on_pressure_after(40), 1);
    }

    #[test]
    fn a_step_that_overshoots_stops_at_the_maximum() {
        let c = BatchConfig::builder()
            .min_batch_size(3)
            .max_batch_size(10)
            .step(4)
            .build()
            .unwrap();
        let mut b = BatchSizeRule::new(&c);
        assert_eq!(
            [b.on_success(), b.on_success(), b.on_success()],
            [7, 10, 10]
        );
    }

    #[test]
    fn fixed_size_stays_at_max_and_returns_after_pressure() {
        let c = BatchConfig::builder().fixed(16).build().unwrap();
        let mut b = BatchSizeRule::new(&c);
        assert_eq!(b.size(), 16);
        assert_eq!(b.on_success(), 16);
        assert_eq!(b.on_pressure(), 8);
        assert_eq!(b.on_success(), 16);
    }
}
