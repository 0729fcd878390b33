//! Self-attention per sequence and head over packed QKV rows.

use rayon::prelude::*;

use super::kernels;
use super::linear::{matmul, Mat, MatMut};
use super::{RelativeBias, Shared};
use gemm::Parallelism;

/// `context[t, head] = softmax(q·kᵀ/√d + bias)·v` for every sequence and
/// head, where `bias` is MPNet's relative-position bias (none for BERT).
///
/// `qkv` holds `tokens × 3h` rows (queries, keys, values side by side);
/// `context` receives `tokens × h`; `spans` are the non-empty sequences'
/// `(start, len)`, computed once per batch. One task per (sequence, head) runs on
/// the current rayon pool, each with single-threaded products: the tasks
/// are the parallelism. Sequences are unpadded, so no mask is needed.
pub(super) fn attend(
    qkv: &[f32],
    context: &mut [f32],
    spans: &[(usize, usize)],
    heads: usize,
    h: usize,
    bias: Option<&RelativeBias>,
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
    let out = Shared(context.as_mut_ptr());
    let qkv = Shared(qkv.as_ptr());
    let tasks = spans.len() * heads;
    (0..tasks)
        .into_par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
            let (start, len) = spans[task / heads];
            let head = task % heads;
            scores.clear();
            match bias {
                // The scores start as the bias and the product adds to it.
                Some(bias) => (0..len).for_each(|i| scores.extend(bias.row(head, i, len))),
                None => scores.resize(len * len, 0.0),
            }
            let row = 3 * h as isize;
            let base = qkv.get().wrapping_add(start * 3 * h + head * d);
            // SAFETY: q, k and v are `len × d` blocks of rows start..start+len
            // of the `tokens × 3h` buffer (columns head·d, h + head·d and
            // 2h + head·d), inside it by the asserts above; `scores` is
            // len × len. The context block (rows start..start+len, columns
            // head·d..head·d+d) belongs to this task alone: spans are disjoint
            // and each (span, head) pair is one task.
            unsafe {
                let q = Mat::new(base, row, 1);
                let k_t = Mat::new(base.add(h), 1, row);
                let v = Mat::new(base.add(2 * h), row, 1);
                matmul(
                    q,
                    k_t,
                    MatMut::new(scores.as_mut_ptr(), len as isize),
                    (len, len, d),
                    scale,
                    bias.is_some(),
                    Parallelism::None,
                );
                kernels::softmax_rows(scores, len);
                let dst = out.get().add(start * h + head * d);
                matmul(
                    Mat::new(scores.as_ptr(), len as isize, 1),
                    v,
                    MatMut::new(dst, h as isize),
                    (len, d, len),
                    1.0,
                    false,
                    Parallelism::None,
                );
            }
        });
}
