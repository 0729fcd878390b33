//! The AVX2 + FMA kernel and the AVX2 transposition of the packing.

use super::{Epilogue, NR};

/// The AVX2 + FMA kernel: `R` × 16 accumulators in `2R` registers.
///
/// # Safety
///
/// As [`tile`], with `cols == NR`, on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn avx2<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    use std::arch::x86_64::*;
    // SAFETY: every pointer stays within the extents the caller
    // promised (whole body); loads and stores are unaligned-tolerant.
    unsafe {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let mut bp = b;
        let mut ap = a;
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for r in 0..R {
                let v = _mm256_broadcast_ss(&*ap.add(r * lda));
                lo[r] = _mm256_fmadd_ps(v, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(v, b1, hi[r]);
            }
            bp = bp.add(ldb);
            ap = ap.add(1);
        }
        if let Some(bias) = epilogue.bias {
            let (b0, b1) = (_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8)));
            for r in 0..R {
                lo[r] = _mm256_add_ps(lo[r], b0);
                hi[r] = _mm256_add_ps(hi[r], b1);
            }
        }
        for r in 0..R {
            let row = c.add(r * ldc);
            if epilogue.add_existing {
                lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(row));
                hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(row.add(8)));
            }
            _mm256_storeu_ps(row, lo[r]);
            _mm256_storeu_ps(row.add(8), hi[r]);
        }
    }
}

/// The whole 8 × 8 blocks of [`pack_rows`], transposed in registers;
/// returns how many rows and columns they covered (multiples of 8).
///
/// # Safety
///
/// As [`pack_rows`], on a CPU with AVX2; `out` holds the packed size.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn pack_rows_avx2(
    src: *const f32,
    (n, k): (usize, usize),
    stride: usize,
    scale: f32,
    out: &mut [f32],
) -> (usize, usize) {
    use std::arch::x86_64::*;
    let (n8, k8) = (n / 8 * 8, k / 8 * 8);
    assert!(
        out.len() >= n.div_ceil(NR) * k * NR,
        "packed buffer too short"
    );
    let scale = _mm256_set1_ps(scale);
    for j0 in (0..n8).step_by(8) {
        // Rows j0..j0+8 are columns j0 % NR.. of one panel (NR is 16).
        let base = (j0 / NR) * k * NR + j0 % NR;
        for kk0 in (0..k8).step_by(8) {
            // SAFETY: rows j0..j0+8 hold k ≥ kk0 + 8 values (caller); the
            // stores write columns base..base+8 of rows kk0..kk0+8 of the
            // panel, inside `out` (asserted).
            unsafe {
                let r: [__m256; 8] = std::array::from_fn(|i| {
                    _mm256_mul_ps(_mm256_loadu_ps(src.add((j0 + i) * stride + kk0)), scale)
                });
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let columns = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                let dst = out.as_mut_ptr().add(base + kk0 * NR);
                for (c, column) in columns.iter().enumerate() {
                    _mm256_storeu_ps(dst.add(c * NR), *column);
                }
            }
        }
    }
    (n8, k8)
}
