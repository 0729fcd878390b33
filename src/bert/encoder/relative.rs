//! MPNet's relative-position attention bias.

use candle_core::Result as CandleResult;

use super::tensors::Tensors;

/// MPNet's attention bias: one learned value per head and relative-position
/// bucket, expanded at load to one value per head and relative position
/// `j - i` of key `j` to query `i`, so a sequence's scores start as a copy.
#[derive(Debug, Clone)]
pub(crate) struct RelativeBias {
    /// `heads × (2·span − 1)`: row `head`, column `j − i + span − 1`.
    pub(super) table: Vec<f32>,
    /// The longest sequence covered.
    pub(super) span: usize,
}

impl RelativeBias {
    /// Reads `encoder.relative_attention_bias.weight` (`buckets × heads`).
    pub(super) fn load(
        vb: &Tensors,
        buckets: usize,
        heads: usize,
        span: usize,
    ) -> CandleResult<Self> {
        let weight = vb.matrix("relative_attention_bias.weight", buckets, heads)?;
        let width = 2 * span.max(1) - 1;
        let mut table = vec![0f32; heads * width];
        for col in 0..width {
            let relative = col as i64 - (span as i64 - 1);
            let bucket = relative_bucket(relative, buckets, 128);
            for head in 0..heads {
                table[head * width + col] = weight[bucket * heads + head];
            }
        }
        Ok(RelativeBias { table, span })
    }

    /// The biases of query `i` against keys `0..len` for `head`.
    pub(crate) fn row(&self, head: usize, i: usize, len: usize) -> &[f32] {
        let width = 2 * self.span - 1;
        let start = head * width + self.span - 1 - i;
        &self.table[start..start + len]
    }
}

/// MPNet's bucket (T5's scheme) for key position minus query position:
/// half the buckets for keys before the query, half for keys after; within
/// each half, exact distances below a quarter of the buckets, then
/// logarithmically wider buckets up to `max_distance`. The logarithm runs
/// in `f32` as transformers' does, so the bucket edges agree.
pub(crate) fn relative_bucket(relative: i64, buckets: usize, max_distance: usize) -> usize {
    let half = (buckets / 2) as i64;
    let n = -relative;
    let mut bucket = if n < 0 { half } else { 0 };
    let n = n.abs();
    let exact = half / 2;
    if n < exact {
        bucket += n;
    } else {
        let scaled = (n as f32 / exact as f32).ln()
            / (max_distance as f64 / exact as f64).ln() as f32
            * (half - exact) as f32;
        bucket += (exact + scaled as i64).min(half - 1);
    }
    bucket as usize
}
