//! Predicting what a batch costs in memory before running it ([`CostModel`]).
//!
//! The backend says what its forward pass holds per token and per token
//! pair ([`CostPrior`], from [`ModelInfo::cost_prior`](crate::ModelInfo::cost_prior));
//! this module keeps only the arithmetic: a calibration ratio learnt from
//! measured batches, and a safety margin.

use crate::embedder::CostPrior;

/// The ratio (measured / raw) assumed before any batch is measured: with
/// the margin, a first prediction of 1.5 × raw.
const PRIOR_RATIO: f64 = 1.5 / MARGIN;
/// Safety margin on top of the ratio.
const MARGIN: f64 = 1.15;
/// Measured ratios are never trusted below this: memory the allocator kept
/// from an earlier batch hides part of a batch's real cost, and a cleanup
/// can give it back at any time.
const MIN_RATIO: f64 = 0.75;
/// Batches whose raw estimate is below this are too small to measure
/// reliably (their peak drowns in allocator noise) and do not calibrate.
const MIN_CALIBRATION_BYTES: u64 = 16 << 20;

/// Predicts a batch's peak memory from its size and padded length, and
/// refines the prediction from measured batches.
///
/// The raw estimate is the backend's [`CostPrior`]: for membatch's BERT
/// encoder, the floats it holds at its peak (layers run one after another
/// in the same buffers, so depth adds nothing at inference). The
/// prediction is raw × ratio × 1.15. The ratio starts at 1.3; each measured
/// batch (measured peak / raw) raises it at once when higher and pulls it
/// 20% of the way down when lower, never below 0.75, so one lucky batch
/// does not make the next one dangerous.
///
/// ```
/// use membatch::batch::CostModel;
/// use membatch::CostPrior;
///
/// let mut cost = CostModel::new(CostPrior::new(4 * (5 * 384 + 1536), 4));
/// let before = cost.estimate(8, 256);
/// assert!(cost.estimate(8, 512) > 2 * before, "attention grows with length²");
/// cost.observe(8, 256, before / 2); // the batch cost less than predicted
/// assert!(cost.estimate(8, 256) < before);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    prior: CostPrior,
    ratio: f64,
    measured: u64,
}

impl CostModel {
    /// An uncalibrated model starting from `prior`.
    pub fn new(prior: CostPrior) -> Self {
        CostModel {
            prior,
            ratio: PRIOR_RATIO,
            measured: 0,
        }
    }

    /// The backend's prior the predictions start from.
    pub fn prior(&self) -> CostPrior {
        self.prior
    }

    /// The calibration ratio in force (measured peak / raw estimate).
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// How many batches calibrated the model.
    pub fn measured(&self) -> u64 {
        self.measured
    }

    /// The raw estimate, before calibration and margin.
    pub(crate) fn raw_bytes(&self, batch: usize, length: usize) -> u64 {
        self.prior.bytes(batch, length)
    }

    /// The predicted peak of a batch of `batch` texts padded to `length`
    /// tokens, margin included.
    pub fn estimate(&self, batch: usize, length: usize) -> u64 {
        (self.raw_bytes(batch, length) as f64 * self.ratio * MARGIN).ceil() as u64
    }

    /// The most texts of padded length `length` whose estimate fits in
    /// `bytes` (zero when not even one does).
    pub(crate) fn max_batch_within(&self, length: usize, bytes: u64) -> usize {
        // The estimate is linear in the batch size up to the batch that
        // fills a chunk, and flat past it: when that batch fits, any does.
        if let Some(chunk) = self.prior.chunk_tokens {
            let l = length.max(1) as u64;
            let filling = usize::try_from(chunk.max(l).div_ceil(l)).unwrap_or(usize::MAX);
            if self.estimate(filling, length) <= bytes {
                return usize::MAX;
            }
        }
        let one = self.estimate(1, length).max(1);
        usize::try_from(bytes / one).unwrap_or(usize::MAX)
    }

    /// Learns from a batch that raised memory by `rise_bytes` at its peak.
    pub fn observe(&mut self, batch: usize, length: usize, rise_bytes: u64) {
        let raw = self.raw_bytes(batch, length);
        if raw < MIN_CALIBRATION_BYTES {
            return;
        }
        let measured = rise_bytes as f64 / raw as f64;
        self.ratio = if measured > self.ratio {
            measured
        } else {
            (0.8 * self.ratio + 0.2 * measured).max(MIN_RATIO)
        };
        self.measured += 1;
        tracing::trace!(batch, length, rise_bytes, raw, ratio = ?self.ratio, "cost model calibrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prior membatch's encoder gives all-MiniLM-L6-v2.
    fn minilm() -> CostModel {
        CostModel::new(CostPrior::new(4 * (5 * 384 + 1536), 4))
    }

    #[test]
    fn the_raw_estimate_is_close_to_a_measured_minilm_batch() {
        // One batch of 64 × 256 tokens raised the RSS by 217 MiB (the
        // guard's report, docs/memory.md); the raw count must be of that
        // order.
        let raw = minilm().raw_bytes(64, 256) as f64 / (1 << 20) as f64;
        assert!((180.0..300.0).contains(&raw), "{raw} MiB");
    }

    #[test]
    fn calibration_jumps_up_and_decays_down() {
        let mut c = minilm();
        let raw = c.raw_bytes(16, 256);
        assert_eq!(
            c.estimate(16, 256),
            (raw as f64 * 1.5).ceil() as u64,
            "prior"
        );
        c.observe(16, 256, raw * 2);
        assert_eq!(c.ratio(), 2.0, "a costlier batch is believed at once");
        c.observe(16, 256, raw);
        assert!(
            (c.ratio() - 1.8).abs() < 1e-9,
            "a cheaper one only slowly: {}",
            c.ratio()
        );
        assert_eq!(c.measured(), 2);
    }

    #[test]
    fn small_batches_do_not_calibrate_and_ratios_have_a_floor() {
        let mut c = minilm();
        for _ in 0..100 {
            c.observe(16, 256, 0);
        }
        assert_eq!(c.ratio(), MIN_RATIO);
        assert_eq!(
            c.estimate(16, 256),
            (c.raw_bytes(16, 256) as f64 * MIN_RATIO * MARGIN).ceil() as u64
        );
        let before = c.ratio();
        c.observe(1, 8, 1 << 40);
        assert_eq!(c.ratio(), before, "a tiny batch is noise");
    }

    #[test]
    fn max_batch_within_is_the_largest_that_fits() {
        let c = minilm();
        let room = 300 << 20;
        let n = c.max_batch_within(256, room);
        assert!(n >= 1);
        assert!(c.estimate(n, 256) <= room);
        assert!(c.estimate(n + 1, 256) > room);
        assert_eq!(c.max_batch_within(256, 1), 0);
    }

    #[test]
    fn a_chunked_prior_lets_any_batch_through_once_a_chunk_fits() {
        // 1,213 tokens a chunk, as membatch's pass for MiniLM.
        let c = CostModel::new(CostPrior::new(4 * (5 * 384 + 1536), 4).chunked(1213));
        let one_chunk = c.estimate(5, 256); // 5 × 256 ≥ 1,213
        assert_eq!(c.estimate(64, 256), one_chunk, "no more past a chunk");
        assert_eq!(c.max_batch_within(256, one_chunk), usize::MAX);
        // Below it the estimate is linear, and so is the answer.
        let n = c.max_batch_within(256, one_chunk - 1);
        assert!((1..5).contains(&n));
        assert!(c.estimate(n, 256) < one_chunk && c.estimate(n + 1, 256) >= one_chunk);
        // A text longer than a chunk is a chunk of its own.
        assert_eq!(c.estimate(3, 2000), c.estimate(1, 2000));
        assert_eq!(c.max_batch_within(2000, c.estimate(1, 2000)), usize::MAX);
        assert_eq!(c.max_batch_within(2000, c.estimate(1, 2000) - 1), 0);
    }
}
