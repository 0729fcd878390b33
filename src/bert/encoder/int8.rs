//! Int8 dense layers: weights quantised per output row, activations per
//! block of [`SCALE_BLOCK`] inputs of each row, products accumulated
//! exactly in `i32` within a block.
//!
//! `y[r, j] = sw[j] · Σ_blocks sx[r, b] · Σ_{k in b} qx[r, k] · qw[j, k] + b[j]`,
//! where `q = round(v / s)` and `s = max|v| / 127` over the row (weights) or
//! block (activations). Per-block activation scales matter: BERT's hidden
//! states have a few large dimensions that would otherwise squash every
//! other value of the token into a handful of levels.
//!
//! Written by hand: no maintained crate offers an int8 × int8 → int32
//! product with AVX2 kernels and these scales (candle's Q8_0 converts two
//! f16 scales per 32 values and measured six times slower than its own f32
//! product here; see docs/benchmarks.md).

use rayon::prelude::*;

/// Values per kernel step (one AVX2 register of i8).
const STEP: usize = 32;
/// Inputs sharing one activation scale.
pub(crate) const SCALE_BLOCK: usize = 32;

/// Symmetric quantisation of `row` into `q` in groups of `group` values;
/// pushes each group's scale. `q` is zero-filled past `row.len()`.
#[inline(always)]
fn quantize_groups(row: &[f32], group: usize, q: &mut [i8], scales: &mut Vec<f32>) {
    for (values, q) in row.chunks(group).zip(q.chunks_mut(group)) {
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let inv = 1.0 / scale;
        for (q, v) in q.iter_mut().zip(values) {
            // |v·inv| <= 127 by construction; the cast saturates anyway.
            *q = (v * inv).round_ties_even() as i8;
        }
        scales.push(scale);
    }
    q[row.len()..].fill(0);
}

#[inline(always)]
fn quantize_rows_generic(
    values: &[f32],
    width: usize,
    padded: usize,
    group: usize,
    out: &mut [i8],
    scales: &mut Vec<f32>,
) {
    for (row, q) in values.chunks_exact(width).zip(out.chunks_exact_mut(padded)) {
        quantize_groups(row, group, q, scales);
        // Blocks wholly inside the padding get a scale too, so every row
        // has padded / group of them.
        for _ in width.div_ceil(group)..padded.div_ceil(group) {
            scales.push(1.0);
        }
    }
}

/// Rows of `width` values into rows of `padded` bytes, one scale per
/// `group` values (`group` = `padded` gives one scale per row).
fn quantize_rows(values: &[f32], width: usize, padded: usize, group: usize) -> (Vec<i8>, Vec<f32>) {
    let rows = values.len() / width;
    let mut out = vec![0i8; rows * padded];
    let mut scales = Vec::with_capacity(rows * padded.div_ceil(group));
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        #[target_feature(enable = "avx2,fma")]
        fn wide(v: &[f32], w: usize, p: usize, g: usize, o: &mut [i8], s: &mut Vec<f32>) {
            quantize_rows_generic(v, w, p, g, o, s)
        }
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { wide(values, width, padded, group, &mut out, &mut scales) };
        return (out, scales);
    }
    quantize_rows_generic(values, width, padded, group, &mut out, &mut scales);
    (out, scales)
}

/// A dense layer's weights in int8, `outputs × padded` row-major.
#[derive(Debug, Clone)]
pub(crate) struct Int8Weights {
    weights: Vec<i8>,
    scales: Vec<f32>,
    inputs: usize,
    padded: usize,
}

impl Int8Weights {
    /// Quantises an `outputs × inputs` row-major `f32` weight.
    pub(crate) fn quantize(weight: &[f32], inputs: usize) -> Self {
        let padded = inputs.div_ceil(SCALE_BLOCK) * SCALE_BLOCK;
        let (weights, scales) = quantize_rows(weight, inputs, padded, SCALE_BLOCK);
        Int8Weights {
            weights,
            scales,
            inputs,
            padded,
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.weights.len() + 4 * self.scales.len()
    }

    /// `out[r, j] += x[r, :] · W[j, :]` for every row of `x`.
    pub(crate) fn accumulate(&self, x: &[f32], out: &mut [f32]) {
        let outputs = self.weights.len() / self.padded;
        let rows = x.len() / self.inputs;
        assert_eq!(x.len(), rows * self.inputs, "input is not rows × in");
        assert_eq!(out.len(), rows * outputs, "output is not rows × out");
        let blocks = self.padded / SCALE_BLOCK;
        let (qx, sx) = quantize_rows(x, self.inputs, self.padded, SCALE_BLOCK);
        debug_assert_eq!(sx.len(), rows * blocks);
        // Tasks of a few rows each: a task's rows stay in L1 while each
        // group of four weight rows meets all of them.
        const ROWS_PER_TASK: usize = 32;
        out.par_chunks_mut(ROWS_PER_TASK * outputs)
            .zip(qx.par_chunks(ROWS_PER_TASK * self.padded))
            .zip(sx.par_chunks(ROWS_PER_TASK * blocks))
            .for_each(|((out, qx), sx)| self.task(qx, sx, out));
    }

    fn task(&self, qx: &[i8], sx: &[f32], out: &mut [f32]) {
        let (p, blocks) = (self.padded, self.padded / SCALE_BLOCK);
        let outputs = self.weights.len() / p;
        let rows = sx.len() / blocks;
        let w = |j: usize| {
            (
                &self.weights[j * p..(j + 1) * p],
                &self.scales[j * blocks..(j + 1) * blocks],
            )
        };
        for j0 in (0..outputs).step_by(4) {
            let js = [0, 1, 2, 3].map(|c| (j0 + c).min(outputs - 1));
            let ws = [w(js[0]), w(js[1]), w(js[2]), w(js[3])];
            for r0 in (0..rows).step_by(2) {
                let r1 = (r0 + 1).min(rows - 1);
                let row = |r: usize| (&qx[r * p..(r + 1) * p], &sx[r * blocks..(r + 1) * blocks]);
                let dots = dot_2x4(row(r0), row(r1), ws);
                // An odd last row ran twice (r1 == r0): keep one copy.
                let pairs = if r1 == r0 { 1 } else { 2 };
                for (r, row_dots) in [(r0, dots[0]), (r1, dots[1])].into_iter().take(pairs) {
                    for (c, dot) in row_dots.iter().enumerate() {
                        let j = j0 + c;
                        if j < outputs {
                            out[r * outputs + j] += dot;
                        }
                    }
                }
            }
        }
    }
}

/// A quantised row: its bytes and one scale per block.
type Row<'a> = (&'a [i8], &'a [f32]);

/// Block-scaled dot products of two activation rows with four weight rows.
fn dot_2x4(a0: Row<'_>, a1: Row<'_>, w: [Row<'_>; 4]) -> [[f32; 4]; 2] {
    let len = a0.0.len();
    let blocks = len / SCALE_BLOCK;
    assert_eq!(len % SCALE_BLOCK, 0);
    assert!([a0, a1]
        .iter()
        .chain(&w)
        .all(|(q, s)| q.len() == len && s.len() == blocks));
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present; the asserts above give every
        // row `len` bytes (a multiple of the block) and every scale row
        // one scale per block.
        return unsafe { avx2::dot_2x4(a0, a1, w) };
    }
    let dot = |(a, sa): Row<'_>, (w, sw): Row<'_>| -> f32 {
        a.chunks(SCALE_BLOCK)
            .zip(w.chunks(SCALE_BLOCK))
            .zip(sa.iter().zip(sw))
            .map(|((a, w), (sa, sw))| {
                let dot: i32 = a.iter().zip(w).map(|(a, w)| *a as i32 * *w as i32).sum();
                dot as f32 * (sa * sw)
            })
            .sum()
    };
    [w.map(|w| dot(a0, w)), w.map(|w| dot(a1, w))]
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Row, SCALE_BLOCK, STEP};
    use std::arch::x86_64::*;

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    ///
    /// Every byte row must hold the same multiple of `SCALE_BLOCK` bytes
    /// and each scale row one scale per block.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_2x4(a0: Row<'_>, a1: Row<'_>, w: [Row<'_>; 4]) -> [[f32; 4]; 2] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); 4]; 2];
        let (x0, x1) = (a0.0.as_ptr(), a1.0.as_ptr());
        let wp = [
            w[0].0.as_ptr(),
            w[1].0.as_ptr(),
            w[2].0.as_ptr(),
            w[3].0.as_ptr(),
        ];
        for block in 0..a0.1.len() {
            let mut sums = [[_mm256_setzero_si256(); 4]; 2];
            for step in 0..SCALE_BLOCK / STEP {
                let at = block * SCALE_BLOCK + step * STEP;
                // SAFETY: at + 32 <= row length (caller's contract);
                // unaligned loads.
                let (v0, v1) = unsafe {
                    (
                        _mm256_loadu_si256(x0.add(at) as *const __m256i),
                        _mm256_loadu_si256(x1.add(at) as *const __m256i),
                    )
                };
                let (abs0, abs1) = (_mm256_abs_epi8(v0), _mm256_abs_epi8(v1));
                for c in 0..4 {
                    // SAFETY: as above.
                    let wv = unsafe { _mm256_loadu_si256(wp[c].add(at) as *const __m256i) };
                    // maddubs multiplies unsigned by signed bytes: |a|
                    // meets w carrying a's sign. Both are within ±127, so
                    // each i16 pair sum (at most 2·127²) cannot saturate.
                    let p0 = _mm256_maddubs_epi16(abs0, _mm256_sign_epi8(wv, v0));
                    let p1 = _mm256_maddubs_epi16(abs1, _mm256_sign_epi8(wv, v1));
                    sums[0][c] = _mm256_add_epi32(sums[0][c], _mm256_madd_epi16(p0, ones));
                    sums[1][c] = _mm256_add_epi32(sums[1][c], _mm256_madd_epi16(p1, ones));
                }
            }
            let sa = [a0.1[block], a1.1[block]];
            for r in 0..2 {
                for c in 0..4 {
                    let s = _mm256_set1_ps(sa[r] * w[c].1[block]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r][c]), s, acc[r][c]);
                }
            }
        }
        let mut out = [[0f32; 4]; 2];
        for r in 0..2 {
            for c in 0..4 {
                out[r][c] = hsum(acc[r][c]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919 % 997) as f32 / 997.0) - 0.5)
            .collect()
    }

    #[test]
    fn quantisation_round_trips_within_half_a_step_per_block() {
        let (width, blocks) = (5 * SCALE_BLOCK / 2, 3);
        let padded = blocks * SCALE_BLOCK;
        let v = values(3 * width, 1);
        let (q, scales) = quantize_rows(&v, width, padded, SCALE_BLOCK);
        assert_eq!(scales.len(), 3 * blocks);
        for (r, row) in v.chunks(width).enumerate() {
            for (k, x) in row.iter().enumerate() {
                let s = scales[r * blocks + k / SCALE_BLOCK];
                let back = q[r * padded + k] as f32 * s;
                assert!((back - x).abs() <= s / 2.0 + 1e-7);
            }
            assert!(q[r * padded + width..(r + 1) * padded]
                .iter()
                .all(|b| *b == 0));
        }
    }

    #[test]
    fn one_large_value_only_coarsens_its_own_block() {
        let mut v = vec![0.01f32; 2 * SCALE_BLOCK];
        v[3] = 100.0;
        let (q, scales) = quantize_rows(&v, v.len(), v.len(), SCALE_BLOCK);
        assert!(scales[0] > 0.5 && scales[1] < 1e-3, "{scales:?}");
        assert_eq!(
            q[SCALE_BLOCK], 127,
            "the second block keeps full resolution"
        );
    }

    #[test]
    fn a_zero_row_quantises_to_zeros() {
        let (q, scales) = quantize_rows(&[0.0; 10], 10, SCALE_BLOCK, SCALE_BLOCK);
        assert_eq!(scales, vec![1.0]);
        assert!(q.iter().all(|b| *b == 0));
    }

    #[test]
    fn the_kernel_equals_exact_integer_dot_products() {
        // Extremes included: ±127 everywhere is the saturation worst case.
        let row = |seed: i32| -> Vec<i8> {
            (0..3 * SCALE_BLOCK as i32)
                .map(|i| match (i + seed) % 5 {
                    0 => 127,
                    1 => -127,
                    _ => ((i * 31 + seed * 17) % 255 - 127) as i8,
                })
                .collect()
        };
        let (a0, a1) = (row(1), row(2));
        let (s0, s1) = (vec![1.0f32, 0.5, 2.0], vec![0.25f32, 1.0, 4.0]);
        let ws: Vec<Vec<i8>> = (3..7).map(row).collect();
        let sw = [1.0f32, 2.0, 0.5];
        let got = dot_2x4(
            (&a0, &s0),
            (&a1, &s1),
            [0, 1, 2, 3].map(|c| (&ws[c][..], &sw[..])),
        );
        for (r, (a, s)) in [(&a0, &s0), (&a1, &s1)].iter().enumerate() {
            for (c, w) in ws.iter().enumerate() {
                let want: f32 = (0..3)
                    .map(|b| {
                        let r = b * SCALE_BLOCK..(b + 1) * SCALE_BLOCK;
                        let dot: i32 = a[r.clone()]
                            .iter()
                            .zip(&w[r])
                            .map(|(a, w)| *a as i32 * *w as i32)
                            .sum();
                        dot as f32 * (s[b] * sw[b])
                    })
                    .sum();
                assert_eq!(got[r][c], want, "row {r} col {c}");
            }
        }
    }

    #[test]
    fn the_product_is_close_to_f32_for_odd_shapes() {
        // 37 rows (odd, more than one task), 6 outputs (not a multiple of
        // 4), 45 inputs (not a multiple of the block).
        let (rows, inputs, outputs) = (37, 45, 6);
        let x = values(rows * inputs, 3);
        let w = values(outputs * inputs, 4);
        let q = Int8Weights::quantize(&w, inputs);
        let mut out = vec![1.0f32; rows * outputs];
        q.accumulate(&x, &mut out);
        for r in 0..rows {
            for j in 0..outputs {
                let exact: f32 = (0..inputs)
                    .map(|k| x[r * inputs + k] * w[j * inputs + k])
                    .sum();
                let got = out[r * outputs + j] - 1.0;
                assert!((got - exact).abs() < 0.02, "({r},{j}): {got} vs {exact}");
            }
        }
    }
}
