//! The kernels and the packing against a naive product, on every kernel
//! this CPU runs.

use super::*;

use crate::test_util::ramp as values;

/// x·Wᵀ + b in f64, row by row.
fn naive(x: &[f32], w: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    let n = b.len();
    x.chunks(k)
        .flat_map(|row| {
            (0..n).map(move |j| {
                (b[j] as f64
                    + (0..k)
                        .map(|i| row[i] as f64 * w[j * k + i] as f64)
                        .sum::<f64>()) as f32
            })
        })
        .collect()
}

#[test]
fn row_blocks_are_non_empty_bounded_and_cover_every_row() {
    for mr in [MR, MR_MAX] {
        for k in [64, 384, 1536] {
            for threads in 1..=8 {
                for rows in 1..3000 {
                    let blocks = row_blocks(rows, k, threads, mr);
                    let tiles = rows.div_ceil(mr);
                    let mut next = 0;
                    for rb in 0..blocks {
                        let r = block_rows(rb, rows, blocks, mr);
                        let (r0, r1) = (r.start, r.end);
                        assert_eq!(r0, next, "rows {rows}, k {k}, threads {threads}, mr {mr}");
                        assert!(r1 > r0 && r1 - r0 <= row_block(k, mr));
                        assert!(r0.is_multiple_of(mr), "a block starts inside a tile");
                        next = r1;
                    }
                    assert_eq!(next, rows);
                    if rows.div_ceil(row_block(k, mr)) >= threads && tiles >= threads {
                        assert!(blocks.is_multiple_of(threads) || blocks == tiles);
                    }
                }
            }
        }
    }
}

fn kernels() -> Vec<Kernel> {
    let all = Kernel::available();
    // Every x86-64 machine this project runs on has AVX2: a detection
    // that lost it would test the portable kernel alone, silently.
    #[cfg(target_arch = "x86_64")]
    assert!(all.contains(&Kernel::Avx2), "AVX2 not detected: {all:?}");
    all
}

fn check(rows: usize, k: usize, n: usize, accumulate: bool, kernel: Kernel) {
    let (x, w, b) = (values(rows * k, 1), values(n * k, 2), values(n, 3));
    let packed = PackedWeights::new(&w, &b, k);
    let residual = values(rows * n, 4);
    let mut out = if accumulate {
        residual.clone()
    } else {
        vec![f32::NAN; rows * n]
    };
    packed.forward_with(&x, &mut out, accumulate, kernel);
    let want = naive(&x, &w, &b, k);
    let tolerance = 1e-5 * k as f32;
    for (i, (got, want)) in out.iter().zip(&want).enumerate() {
        let want = if accumulate {
            want + residual[i]
        } else {
            *want
        };
        assert!(
            (got - want).abs() <= tolerance,
            "{kernel:?} rows {rows} k {k} n {n} acc {accumulate}: [{}, {}] {got} vs {want}",
            i / n,
            i % n
        );
    }
}

#[test]
fn every_kernel_matches_a_naive_product_on_ragged_shapes() {
    for kernel in kernels() {
        // Rows not a multiple of any tile's, inputs across KC blocks, outputs
        // not a multiple of NR; single rows and columns; blocks of K in
        // both loop orders (fewer inputs than outputs, and more).
        for (rows, k, n) in [
            (1, 1, 1),
            (7, 5, 3),
            (13, 300, 40),
            (6, 256, 16),
            (25, 513, 33),
            (2, 64, 130),
            (11, 300, 310),
        ] {
            check(rows, k, n, false, kernel);
            check(rows, k, n, true, kernel);
        }
    }
}

#[test]
fn vector_kernels_agree_bit_for_bit() {
    // One fused multiply-add per input in the same order, bias and
    // residual added after: the AVX2 and AVX-512 tiles (of one panel
    // or two) differ only in how many rows and columns they hold, so a
    // model's vectors do not depend on which one this CPU picks.
    let vector: Vec<Kernel> = kernels()
        .into_iter()
        .filter(|k| *k != Kernel::Generic)
        .collect();
    for (rows, k, n) in [(37, 384, 64), (9, 1536, 48), (100, 300, 40), (21, 300, 336)] {
        let (x, w, b) = (values(rows * k, 11), values(n * k, 12), values(n, 13));
        let packed = PackedWeights::new(&w, &b, k);
        let outs: Vec<Vec<f32>> = vector
            .iter()
            .map(|kernel| {
                let mut out = values(rows * n, 14);
                packed.forward_with(&x, &mut out, true, *kernel);
                out
            })
            .collect();
        for (kernel, out) in vector.iter().zip(&outs).skip(1) {
            assert!(
                out == &outs[0],
                "{kernel:?} vs {:?} on {rows}×{k}×{n}",
                vector[0]
            );
        }
    }
}

#[test]
fn products_split_over_threads_equal_one_thread_bit_for_bit() {
    // Enough rows and flops to be split, over 3 threads: neither a
    // power of two nor a divisor of the row blocks.
    let (rows, k, n) = (301, 96, 48);
    let (x, w, b) = (values(rows * k, 5), values(n * k, 6), values(n, 7));
    let packed = PackedWeights::new(&w, &b, k);
    let mut one = vec![0f32; rows * n];
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    single.install(|| packed.forward(&x, &mut one, false));
    for threads in [2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut many = vec![0f32; rows * n];
        pool.install(|| packed.forward(&x, &mut many, false));
        assert_eq!(one, many, "{threads} threads");
    }
    // And a batch with fewer row blocks than threads: split by panels.
    let rows = 4;
    let (k, n) = (1024, 512);
    let (x, w, b) = (values(rows * k, 8), values(n * k, 9), values(n, 10));
    let packed = PackedWeights::new(&w, &b, k);
    let mut split = vec![0f32; rows * n];
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(|| packed.forward(&x, &mut split, false));
    let mut whole = vec![0f32; rows * n];
    single.install(|| packed.forward(&x, &mut whole, false));
    assert_eq!(split, whole);
}

#[test]
fn packed_rows_are_the_transpose_on_every_kernel() {
    for kernel in kernels() {
        for (n, k) in [(1, 1), (8, 8), (16, 32), (17, 33), (40, 10), (5, 64)] {
            let stride = k + 3;
            let src = values(n * stride, 5);
            let mut out = vec![f32::NAN; 3];
            // SAFETY: src holds n rows of stride `stride` ≥ k.
            unsafe { pack_rows(src.as_ptr(), (n, k), stride, 0.5, &mut out, kernel) };
            assert_eq!(out.len(), n.div_ceil(NR) * k * NR);
            for p in 0..n.div_ceil(NR) {
                for kk in 0..k {
                    for col in 0..NR {
                        let j = p * NR + col;
                        let want = if j < n {
                            src[j * stride + kk] * 0.5
                        } else {
                            0.0
                        };
                        assert_eq!(out[p * k * NR + kk * NR + col], want, "{kernel:?} {n}×{k}");
                    }
                }
            }
        }
    }
}

#[test]
fn packing_pads_whole_panels_and_is_aligned() {
    let packed = PackedWeights::new(&values(20 * 3, 1), &values(20, 2), 3);
    assert_eq!(packed.data().as_ptr() as usize % 64, 0);
    assert_eq!(packed.data().len(), 2 * NR * 3);
    // Output 17 lives in panel 1, column 1.
    let w = values(20 * 3, 1);
    for k in 0..3 {
        assert_eq!(packed.data()[NR * 3 + k * NR + 1], w[17 * 3 + k]);
    }
    assert!(packed.data()[NR * 3 + 2 * NR + 4..]
        .iter()
        .all(|v| *v == 0.0));
}
