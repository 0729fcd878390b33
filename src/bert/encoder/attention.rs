//! Self-attention per sequence and head over packed QKV rows.

use rayon::prelude::*;

use super::dense;
use super::kernels;
#[cfg(any(test, feature = "bench-internals"))]
use super::linear::{matmul, Mat, MatMut};
use super::{RelativeBias, TaskPtr};
#[cfg(any(test, feature = "bench-internals"))]
use gemm::Parallelism;

// The packed products pad score rows to whole panels, which the softmax
// walks in whole groups of lanes.
const _: () = assert!(dense::NR.is_multiple_of(kernels::SOFTMAX_LANES));

/// What runs a head's two products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Products {
    /// The dense layers' micro-kernel on the head's keys and values packed
    /// per task (the forward pass's choice: [`Products::fastest`]).
    Packed(dense::Kernel),
    /// The `gemm` crate on strided views, as attention ran before: the
    /// benches' baseline and the tests' second opinion (feature
    /// `bench-internals`).
    #[cfg(any(test, feature = "bench-internals"))]
    GemmCrate,
}

impl Products {
    /// The packed products on the fastest kernel this CPU runs.
    pub(crate) fn fastest() -> Products {
        Products::Packed(dense::kernel_for_this_cpu())
    }
}

/// `context[t, head] = softmax(q·kᵀ/√d + bias)·v` for every sequence and
/// head, where `bias` is MPNet's relative-position bias (none for BERT).
///
/// `qkv` holds `tokens × 3h` rows (queries, keys, values side by side);
/// `context` receives `tokens × h`; `spans` are the non-empty sequences'
/// `(start, len)`, computed once per batch. One task per (sequence, head) runs on
/// the current rayon pool, each with single-threaded products: the tasks
/// are the parallelism. Sequences are unpadded, so no mask is needed.
///
/// The two products run on the dense layers' micro-kernel ([`dense::product`]):
/// the head's keys are transposed into panels per task (a `len × d` copy),
/// its values read in place. Against the `gemm` crate, which packs both
/// sides and dispatches per call, that measured 9% faster on short
/// sequences and the same on mixed lengths up to 256 (criterion
/// `attention_flops`, docs/benchmarks.md).
pub(crate) fn attend(
    qkv: &[f32],
    context: &mut [f32],
    spans: &[(usize, usize)],
    heads: usize,
    h: usize,
    bias: Option<&RelativeBias>,
    products: Products,
) {
    let tokens = context.len() / h.max(1);
    assert_eq!(qkv.len(), tokens * 3 * h, "qkv is not tokens × 3h");
    assert_eq!(context.len(), tokens * h, "context is not tokens × h");
    assert!(
        heads > 0 && h.is_multiple_of(heads),
        "h is not a multiple of heads"
    );
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    // Bounds: every span lies inside `tokens`, checked here for the raw
    // views below.
    assert!(spans.iter().all(|(s, l)| *l > 0 && s + l <= tokens));
    assert!(bias.is_none_or(|b| spans.iter().all(|(_, l)| *l <= b.span)));
    let out = TaskPtr(context.as_mut_ptr());
    let qkv = TaskPtr(qkv.as_ptr());
    let tasks = spans.len() * heads;
    (0..tasks)
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, task| {
            let (start, len) = spans[task / heads];
            let head = task % heads;
            let Scratch {
                scores,
                keys,
                values,
                inv_sums,
            } = scratch;
            // The packed products' score rows are padded to whole panels:
            // the product writes every panel whole (no partial panel's copy
            // out and back) and the softmax reads and writes whole groups
            // of lanes (`kernels::SOFTMAX_LANES`, the panels' width), its
            // padding masked (zeros from the padded keys, or stale values
            // past a bias row).
            let ld = match products {
                Products::Packed(_) => len.next_multiple_of(dense::NR),
                #[cfg(any(test, feature = "bench-internals"))]
                Products::GemmCrate => len,
            };
            // The buffer only grows: a product writes every score it
            // keeps, so stale values past a shorter sequence's are harmless.
            if scores.len() < len * ld {
                scores.resize(len * ld, 0.0);
            }
            let scores = &mut scores[..len * ld];
            match bias {
                // The scores start as the bias and the product adds to it.
                Some(bias) => {
                    for (i, row) in scores.chunks_exact_mut(ld).enumerate() {
                        row[..len].copy_from_slice(bias.row(head, i, len));
                    }
                }
                // The `gemm` crate is told to add to zeros; the packed
                // product writes every score.
                #[cfg(any(test, feature = "bench-internals"))]
                None if products == Products::GemmCrate => scores.fill(0.0),
                None => {}
            }
            let row = 3 * h;
            let base = qkv.get().wrapping_add(start * row + head * d);
            // SAFETY: q, k and v are `len × d` blocks of rows start..start+len
            // of the `tokens × 3h` buffer (columns head·d, h + head·d and
            // 2h + head·d), inside it by the asserts above; `scores` is
            // len × ld (ld ≥ len). The context block (rows start..start+len, columns
            // head·d..head·d+d) belongs to this task alone: spans are disjoint
            // and each (span, head) pair is one task.
            unsafe {
                match products {
                    Products::Packed(kernel) => {
                        // The keys packed with the scale folded in: q·(k/√d),
                        // in ld / NR panels (the last padded with zeros).
                        dense::pack_rows(base.add(h), (len, d), row, scale, keys, kernel);
                        dense::product(
                            base,
                            row,
                            (len, ld, d),
                            dense::Rhs::packed(keys, d),
                            scores.as_mut_ptr(),
                            ld,
                            bias.is_some(),
                            kernel,
                        );
                        // The rows' division by their sums is left to the
                        // context below (d values a row instead of len).
                        inv_sums.resize(len, 0.0);
                        kernels::softmax_numerators(scores, len, ld, inv_sums);
                        // The values' rows hold a head's columns side by side:
                        // read in place when they fill whole panels (every
                        // model seen: d = 32 or 64), else packed with zeros.
                        let values = if d.is_multiple_of(dense::NR) {
                            dense::Rhs {
                                ptr: base.add(2 * h),
                                panel_stride: dense::NR,
                                ldb: row,
                            }
                        } else {
                            dense::pack_columns(base.add(2 * h), len, d, row, values);
                            dense::Rhs::packed(values, len)
                        };
                        let context = out.get().add(start * h + head * d);
                        dense::product(
                            scores.as_ptr(),
                            ld,
                            (len, d, len),
                            values,
                            context,
                            h,
                            false,
                            kernel,
                        );
                        // Each context row divided by its scores' sum, in
                        // the task's own block (see above).
                        for (i, inv) in inv_sums.iter().enumerate() {
                            let row = std::slice::from_raw_parts_mut(context.add(i * h), d);
                            for v in row {
                                *v *= inv;
                            }
                        }
                    }
                    #[cfg(any(test, feature = "bench-internals"))]
                    Products::GemmCrate => {
                        let stride = row as isize;
                        matmul(
                            Mat::new(base, stride, 1),
                            Mat::new(base.add(h), 1, stride),
                            MatMut::new(scores.as_mut_ptr(), len as isize),
                            (len, len, d),
                            scale,
                            bias.is_some(),
                            Parallelism::None,
                        );
                        kernels::softmax_rows(scores, len);
                        matmul(
                            Mat::new(scores.as_ptr(), len as isize, 1),
                            Mat::new(base.add(2 * h), stride, 1),
                            MatMut::new(out.get().add(start * h + head * d), h as isize),
                            (len, d, len),
                            1.0,
                            false,
                            Parallelism::None,
                        );
                    }
                }
            }
        });
}

/// One task's buffers, kept by each rayon worker across its tasks.
#[derive(Default)]
struct Scratch {
    /// The `len × len` scores, then probabilities.
    scores: Vec<f32>,
    /// The head's keys, packed (and scaled).
    keys: Vec<f32>,
    /// The head's values, packed (when its width is not a whole number
    /// of panels).
    values: Vec<f32>,
    /// 1 / each score row's sum of exponentials.
    inv_sums: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ramp as values;

    /// softmax(q·kᵀ/√d + bias)·v for one sequence and head, in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        qkv: &[f32],
        (start, len): (usize, usize),
        head: usize,
        heads: usize,
        h: usize,
        bias: Option<&RelativeBias>,
    ) -> Vec<f64> {
        let d = h / heads;
        let at = |t: usize, part: usize, c: usize| {
            qkv[(start + t) * 3 * h + part * h + head * d + c] as f64
        };
        let mut out = vec![0f64; len * d];
        for i in 0..len {
            let mut scores: Vec<f64> = (0..len)
                .map(|j| {
                    let dot: f64 = (0..d).map(|c| at(i, 0, c) * at(j, 1, c)).sum();
                    dot / (d as f64).sqrt() + bias.map_or(0.0, |b| b.row(head, i, len)[j] as f64)
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            scores.iter_mut().for_each(|s| *s = (*s - max).exp());
            let sum: f64 = scores.iter().sum();
            for (j, p) in scores.iter().enumerate() {
                for c in 0..d {
                    out[i * d + c] += p / sum * at(j, 2, c);
                }
            }
        }
        out
    }

    #[test]
    fn packed_and_gemm_products_match_the_definition() {
        let mut kernels = vec![Products::GemmCrate];
        kernels.extend(dense::Kernel::available().into_iter().map(Products::Packed));
        // Head widths a multiple of the panel width and not (d = 10);
        // sequences of one token, under, at and over a panel of keys.
        let spans = [(0, 1), (1, 7), (8, 16), (24, 17), (41, 40)];
        let tokens = 81;
        for (h, heads) in [(64, 2), (30, 3), (96, 1)] {
            let span = 40;
            let bias = RelativeBias {
                table: values(heads * (2 * span - 1), 11),
                span,
            };
            let qkv = values(tokens * 3 * h, 12);
            for bias in [None, Some(&bias)] {
                for products in &kernels {
                    let mut context = vec![f32::NAN; tokens * h];
                    attend(&qkv, &mut context, &spans, heads, h, bias, *products);
                    let d = h / heads;
                    for &(start, len) in &spans {
                        for head in 0..heads {
                            let want = naive(&qkv, (start, len), head, heads, h, bias);
                            for i in 0..len {
                                for c in 0..d {
                                    let got = context[(start + i) * h + head * d + c] as f64;
                                    let w = want[i * d + c];
                                    assert!(
                                        (got - w).abs() < 1e-5,
                                        "{products:?} h {h} heads {heads} bias {} span ({start}, {len}) \
                                         head {head} [{i}, {c}]: {got} vs {w}",
                                        bias.is_some()
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
