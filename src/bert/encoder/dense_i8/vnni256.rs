//! The VNNI kernels on 256-bit registers, for either encoding of
//! `vpdpbusd` (AVX-512 VNNI with VL, or AVX-VNNI).

use super::{Operands, BLOCK, GROUP, NR};

/// The VNNI kernel body on 256-bit registers, for either encoding of
/// `vpdpbusd`: one panel (a single one left after the pairs, on AVX-512).
macro_rules! vnni_kernel {
    ($name:ident, $features:literal, $dp:ident) => {
        /// # Safety
        ///
        /// As [`Int8Kernel::run`], on a CPU with the enabled features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name<const R: usize>(blocks: usize, ops: Operands) {
            use std::arch::x86_64::*;
            // SAFETY: within the extents the caller promised (whole body);
            // loads and stores are unaligned-tolerant.
            unsafe {
                let mut acc_lo = [_mm256_setzero_ps(); R];
                let mut acc_hi = [_mm256_setzero_ps(); R];
                let mut bp = ops.b;
                let mut ap = ops.a;
                for blk in 0..blocks {
                    let mut lo = [_mm256_setzero_si256(); R];
                    let mut hi = [_mm256_setzero_si256(); R];
                    for _ in 0..BLOCK / GROUP {
                        let b0 = _mm256_loadu_si256(bp as *const __m256i);
                        let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                        for r in 0..R {
                            let x = _mm256_set1_epi32(
                                (ap.add(r * ops.lda) as *const i32).read_unaligned(),
                            );
                            lo[r] = $dp(lo[r], x, b0);
                            hi[r] = $dp(hi[r], x, b1);
                        }
                        bp = bp.add(NR * GROUP);
                        ap = ap.add(GROUP);
                    }
                    let off0 = _mm256_loadu_si256(ops.offsets.add(blk * NR) as *const __m256i);
                    let off1 = _mm256_loadu_si256(ops.offsets.add(blk * NR + 8) as *const __m256i);
                    let sw0 = _mm256_loadu_ps(ops.w_scales.add(blk * NR));
                    let sw1 = _mm256_loadu_ps(ops.w_scales.add(blk * NR + 8));
                    for r in 0..R {
                        let sx = _mm256_set1_ps(*ops.x_scales.add(r * blocks + blk));
                        let lo_f = _mm256_cvtepi32_ps(_mm256_sub_epi32(lo[r], off0));
                        let hi_f = _mm256_cvtepi32_ps(_mm256_sub_epi32(hi[r], off1));
                        acc_lo[r] = _mm256_fmadd_ps(lo_f, _mm256_mul_ps(sx, sw0), acc_lo[r]);
                        acc_hi[r] = _mm256_fmadd_ps(hi_f, _mm256_mul_ps(sx, sw1), acc_hi[r]);
                    }
                }
                let bias0 = _mm256_loadu_ps(ops.bias);
                let bias1 = _mm256_loadu_ps(ops.bias.add(8));
                for r in 0..R {
                    let row = ops.c.add(r * ops.ldc);
                    let mut lo = _mm256_add_ps(acc_lo[r], bias0);
                    let mut hi = _mm256_add_ps(acc_hi[r], bias1);
                    if ops.accumulate {
                        lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
                        hi = _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8)));
                    }
                    _mm256_storeu_ps(row, lo);
                    _mm256_storeu_ps(row.add(8), hi);
                }
            }
        }
    };
}

vnni_kernel!(avx512_vnni, "avx512vnni,avx512vl,fma", _mm256_dpbusd_epi32);
vnni_kernel!(avx_vnni, "avxvnni,fma", _mm256_dpbusd_avx_epi32);
