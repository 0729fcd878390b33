//! Int8 weights for CPUs without VNNI: each row stored as bytes with one
//! `f32` scale per block of [`SCALE_BLOCK`] values, `w ≈ q · s` with
//! `s = max|w| / 127` over the block. (With VNNI, dense layers use
//! [`super::dense_i8`], whose products are integer; the word table is
//! stored this way on every CPU.)
//!
//! Products run in `f32`: a layer's weights are expanded into a scratch
//! buffer just before its product (a few MB, a few milliseconds per
//! batch). Integer arithmetic on AVX2 alone (activations quantised too,
//! `i32` accumulation with `maddubs`) was built and measured first: it ran
//! at 0.6× the speed of the `f32` product and cost accuracy
//! (docs/benchmarks.md), so without VNNI int8 buys memory, not speed.
//! Written by hand: candle's Q8_0 tensors have the same layout idea, but
//! their matmul measured six times slower than `f32` here and they cannot
//! be expanded into our own buffers.

/// Values sharing one scale.
pub(crate) const SCALE_BLOCK: usize = 32;

/// Rows of `f32` weights in int8 with per-block scales.
#[derive(Debug, Clone)]
pub(crate) struct Int8Weights {
    values: Vec<i8>,
    scales: Vec<f32>,
    width: usize,
}

impl Int8Weights {
    /// Quantises `rows × width` row-major values.
    pub(crate) fn quantize(weights: &[f32], width: usize) -> Self {
        assert!(
            width > 0 && weights.len().is_multiple_of(width),
            "not rows × width"
        );
        let blocks = width.div_ceil(SCALE_BLOCK);
        let mut values = vec![0i8; weights.len()];
        let mut scales = Vec::with_capacity(weights.len() / width * blocks);
        for (row, q) in weights
            .chunks_exact(width)
            .zip(values.chunks_exact_mut(width))
        {
            for (block, q) in row.chunks(SCALE_BLOCK).zip(q.chunks_mut(SCALE_BLOCK)) {
                let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                for (q, v) in q.iter_mut().zip(block) {
                    // |v / scale| <= 127 by construction.
                    *q = (v / scale).round() as i8;
                }
                scales.push(scale);
            }
        }
        Int8Weights {
            values,
            scales,
            width,
        }
    }

    /// Quantises `rows × width` values that `read(rows, out)` writes a
    /// range of rows at a time (so that they never sit in memory whole).
    pub(crate) fn quantize_from<E>(
        rows: usize,
        width: usize,
        mut read: impl FnMut(std::ops::Range<usize>, &mut [f32]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let chunk = (256 * 1024 / width.max(1)).max(1);
        let mut buf = vec![0f32; chunk.min(rows) * width];
        let mut values = Vec::with_capacity(rows * width);
        let mut scales = Vec::with_capacity(rows * width.div_ceil(SCALE_BLOCK));
        for start in (0..rows).step_by(chunk) {
            let end = (start + chunk).min(rows);
            let part = &mut buf[..(end - start) * width];
            read(start..end, part)?;
            let q = Int8Weights::quantize(part, width);
            values.extend_from_slice(&q.values);
            scales.extend_from_slice(&q.scales);
        }
        Ok(Int8Weights {
            values,
            scales,
            width,
        })
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.values.len() + 4 * self.scales.len()
    }

    /// Number of values (rows × width).
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Expands rows `rows` into `out` (`rows.len() × width` values).
    pub(crate) fn expand_rows(&self, rows: std::ops::Range<usize>, out: &mut [f32]) {
        let w = self.width;
        let blocks = w.div_ceil(SCALE_BLOCK);
        assert_eq!(out.len(), rows.len() * w, "out is not rows × width");
        let values = &self.values[rows.start * w..rows.end * w];
        let scales = &self.scales[rows.start * blocks..rows.end * blocks];
        for ((q, o), s) in values
            .chunks_exact(w)
            .zip(out.chunks_exact_mut(w))
            .zip(scales.chunks_exact(blocks))
        {
            for ((q, o), s) in q.chunks(SCALE_BLOCK).zip(o.chunks_mut(SCALE_BLOCK)).zip(s) {
                for (q, o) in q.iter().zip(o) {
                    *o = *q as f32 * s;
                }
            }
        }
    }

    /// One row (`row.len()` values) quantised as [`Int8Weights::quantize`]
    /// quantises it, in one allocation: the values, then one
    /// little-endian `f32` scale per block.
    pub(crate) fn quantize_row_packed(row: &[f32]) -> Box<[u8]> {
        let q = Int8Weights::quantize(row, row.len().max(1));
        let mut out = Vec::with_capacity(q.values.len() + 4 * q.scales.len());
        out.extend(q.values.iter().map(|v| *v as u8));
        for s in &q.scales {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.into_boxed_slice()
    }

    /// Bytes a row of `width` values takes in
    /// [`quantize_row_packed`](Self::quantize_row_packed)'s form.
    pub(crate) fn packed_row_bytes(width: usize) -> usize {
        width + 4 * width.div_ceil(SCALE_BLOCK)
    }

    /// Expands a row of [`quantize_row_packed`](Self::quantize_row_packed)
    /// into `out`, exactly as [`expand_rows`](Self::expand_rows) would.
    pub(crate) fn expand_row_packed(row: &[u8], out: &mut [f32]) {
        let (values, scales) = row.split_at(out.len());
        for ((q, o), s) in values
            .chunks(SCALE_BLOCK)
            .zip(out.chunks_mut(SCALE_BLOCK))
            .zip(scales.chunks_exact(4))
        {
            let s = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            for (q, o) in q.iter().zip(o) {
                *o = (*q as i8) as f32 * s;
            }
        }
    }

    /// Expands every row into `out`.
    pub(crate) fn expand(&self, out: &mut [f32]) {
        self.expand_rows(0..self.values.len() / self.width, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::ramp as values;

    #[test]
    fn expansion_is_within_half_a_step_of_each_value() {
        // A width that is not a multiple of the block.
        let width = 5 * SCALE_BLOCK / 2;
        let v = values(3 * width, 1);
        let q = Int8Weights::quantize(&v, width);
        let mut back = vec![0f32; v.len()];
        q.expand(&mut back);
        for (row, (v, b)) in v.chunks(width).zip(back.chunks(width)).enumerate() {
            for (k, (v, b)) in v.iter().zip(b).enumerate() {
                let s = q.scales[row * 3 + k / SCALE_BLOCK];
                assert!((v - b).abs() <= s / 2.0 + 1e-7, "{v} vs {b}");
            }
        }
        assert!(
            q.bytes() * 3 < 4 * v.len(),
            "a quarter of the f32 bytes, plus scales"
        );
    }

    #[test]
    fn one_large_value_only_coarsens_its_own_block() {
        let mut v = vec![0.01f32; 2 * SCALE_BLOCK];
        v[3] = 100.0;
        let q = Int8Weights::quantize(&v, v.len());
        let mut back = vec![0f32; v.len()];
        q.expand(&mut back);
        assert_eq!(back[3], 100.0);
        assert!(back[SCALE_BLOCK..].iter().all(|b| (b - 0.01).abs() < 1e-9));
        assert_eq!(back[4], 0.0, "0.01 is below half a step of the first block");
    }

    #[test]
    fn quantising_in_chunks_equals_quantising_whole() {
        let (rows, width) = (3000, 100); // several chunks, a partial last one
        let v = values(rows * width, 3);
        let whole = Int8Weights::quantize(&v, width);
        let chunked = Int8Weights::quantize_from(rows, width, |r, out: &mut [f32]| {
            out.copy_from_slice(&v[r.start * width..r.end * width]);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(
            (whole.values, whole.scales),
            (chunked.values, chunked.scales)
        );
    }

    #[test]
    fn zero_rows_stay_zero_and_rows_expand_alone() {
        let mut v = vec![0f32; 3 * 40];
        v[80..].copy_from_slice(&values(40, 2));
        let q = Int8Weights::quantize(&v, 40);
        let mut row = vec![f32::NAN; 40];
        q.expand_rows(0..1, &mut row);
        assert!(row.iter().all(|x| *x == 0.0));
        q.expand_rows(2..3, &mut row);
        assert!(row.iter().zip(&v[80..]).all(|(a, b)| (a - b).abs() < 0.01));
    }
}
