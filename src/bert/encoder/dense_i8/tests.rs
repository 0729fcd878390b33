//! The int8 kernels against a reference in integers, on every kernel this
//! CPU runs.

use super::*;

use crate::test_util::ramp as values;

fn kernels() -> Vec<Int8Kernel> {
    let mut all = vec![Int8Kernel::Generic];
    all.extend(Int8Kernel::vnni());
    all
}

/// The scheme computed directly: both sides quantised per block as
/// documented, each block's integer dot product exact, then scaled.
fn reference(x: &[f32], w: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    // Per block: the quantised values and the scale. Weights divide by
    // their scale, activations multiply by its inverse, as the code
    // does (the two can round differently).
    let quantize = |row: &[f32], activation: bool| -> Vec<(Vec<i32>, f32)> {
        row.chunks(BLOCK)
            .map(|block| {
                let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let s = if max > 0.0 { max / 127.0 } else { 1.0 };
                let q = block
                    .iter()
                    .map(|v| kernels::round_to_i32(if activation { v * (1.0 / s) } else { v / s }))
                    .collect();
                (q, s)
            })
            .collect()
    };
    let weights: Vec<_> = w.chunks(k).map(|row| quantize(row, false)).collect();
    x.chunks(k)
        .flat_map(|row| {
            let qx = quantize(row, true);
            weights
                .iter()
                .zip(b)
                .map(|(qw, b)| {
                    let mut y = 0f64;
                    for ((xq, xs), (wq, ws)) in qx.iter().zip(qw) {
                        let dot: i32 = xq.iter().zip(wq).map(|(a, b)| a * b).sum();
                        y += dot as f64 * *xs as f64 * *ws as f64;
                    }
                    (y + *b as f64) as f32
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_kernel_computes_the_documented_scheme_and_stays_near_f32() {
    for kernel in kernels() {
        for (rows, k, n) in [
            (1, 1, 1),
            (7, 5, 3),
            (13, 384, 40),
            (6, 256, 16),
            (25, 1538, 33),
            (9, 64, 96),
        ] {
            let (x, w, b) = (values(rows * k, 1), values(n * k, 2), values(n, 3));
            let packed = Int8Panels::new(&w, &b, k);
            let mut out = vec![f32::NAN; rows * n];
            packed.forward(&x, &mut out, false, &mut Quantized::default(), kernel);
            let want = reference(&x, &w, &b, k);
            for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                // Only the order of the float steps differs.
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{kernel:?} {rows}×{k}×{n} [{i}]: {got} vs {want}"
                );
            }
            // And the scheme is a close approximation of the f32 product.
            for (r, row) in x.chunks(k).enumerate() {
                for j in 0..n {
                    let exact: f32 =
                        b[j] + row.iter().zip(&w[j * k..]).map(|(a, b)| a * b).sum::<f32>();
                    let bound = 0.02 * (1.0 + (k as f32).sqrt() / 4.0);
                    assert!(
                        (out[r * n + j] - exact).abs() < bound,
                        "{exact} vs {}",
                        out[r * n + j]
                    );
                }
            }
        }
    }
}

#[test]
fn accumulate_adds_to_the_output_and_threads_agree() {
    let (rows, k, n) = (301, 96, 48);
    let (x, w, b) = (values(rows * k, 5), values(n * k, 6), values(n, 7));
    let packed = Int8Panels::new(&w, &b, k);
    let kernel = Int8Kernel::vnni().unwrap_or(Int8Kernel::Generic);
    let mut plain = vec![0f32; rows * n];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one.install(|| packed.forward(&x, &mut plain, false, &mut Quantized::default(), kernel));
    let residual = values(rows * n, 8);
    for threads in [2, 3] {
        let mut out = residual.clone();
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| packed.forward(&x, &mut out, true, &mut Quantized::default(), kernel));
        for i in 0..out.len() {
            assert_eq!(out[i], residual[i] + plain[i], "{threads} threads [{i}]");
        }
    }
}

#[test]
fn zero_rows_and_extreme_activations_do_not_overflow() {
    // A zero row (scale 1), and rows at ±the largest magnitude, where
    // every product is 127 · 127 over K = 1,536.
    let k = 1536;
    let mut x = vec![0f32; 3 * k];
    x[k..2 * k].fill(1e4);
    x[2 * k..].fill(-1e4);
    let w = vec![1f32; 2 * k];
    let packed = Int8Panels::new(&w, &[0.5, -0.5], k);
    for kernel in kernels() {
        let mut out = vec![0f32; 3 * 2];
        packed.forward(&x, &mut out, false, &mut Quantized::default(), kernel);
        assert_eq!(&out[..2], &[0.5, -0.5]);
        let big = 1e4 * k as f32;
        assert!((out[2] - big).abs() < big * 1e-5, "{}", out[2]);
        assert!((out[4] + big).abs() < big * 1e-5, "{}", out[4]);
    }
}
