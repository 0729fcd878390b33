//! The AVX-512 VNNI kernel on two panels side by side.

use super::{Operands, BLOCK, GROUP, NR};

/// The AVX-512 VNNI kernel on two whole panels, `panel` bytes of weights
/// apart (their scales and offsets `blocks × NR` apart, their bias `NR`),
/// on 512-bit registers: a group of four inputs of a panel's 16 columns is
/// one register and each `vpdpbusd` does 64 multiply-adds. The same steps
/// per output as the one-panel kernel, so the same results bit for bit.
///
/// # Safety
///
/// As [`Int8Kernel::run`] for both panels, on a CPU with AVX-512F, VL and
/// VNNI.
#[target_feature(enable = "avx512vnni,avx512f,avx512vl,fma")]
pub(super) unsafe fn avx512_vnni_pair<const R: usize>(blocks: usize, ops: Operands, panel: usize) {
    use std::arch::x86_64::*;
    // SAFETY: within the extents the caller promised (whole body); loads
    // and stores are unaligned-tolerant.
    unsafe {
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        let mut bp = ops.b;
        let mut ap = ops.a;
        let meta = blocks * NR;
        for blk in 0..blocks {
            let mut s0 = [_mm512_setzero_si512(); R];
            let mut s1 = [_mm512_setzero_si512(); R];
            for _ in 0..BLOCK / GROUP {
                let w0 = _mm512_loadu_si512(bp.cast());
                let w1 = _mm512_loadu_si512(bp.add(panel).cast());
                for r in 0..R {
                    let x = _mm512_set1_epi32((ap.add(r * ops.lda) as *const i32).read_unaligned());
                    s0[r] = _mm512_dpbusd_epi32(s0[r], x, w0);
                    s1[r] = _mm512_dpbusd_epi32(s1[r], x, w1);
                }
                bp = bp.add(NR * GROUP);
                ap = ap.add(GROUP);
            }
            let off0 = _mm512_loadu_si512(ops.offsets.add(blk * NR).cast());
            let off1 = _mm512_loadu_si512(ops.offsets.add(meta + blk * NR).cast());
            let sw0 = _mm512_loadu_ps(ops.w_scales.add(blk * NR));
            let sw1 = _mm512_loadu_ps(ops.w_scales.add(meta + blk * NR));
            for r in 0..R {
                let sx = _mm512_set1_ps(*ops.x_scales.add(r * blocks + blk));
                let f0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(s0[r], off0));
                let f1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(s1[r], off1));
                acc0[r] = _mm512_fmadd_ps(f0, _mm512_mul_ps(sx, sw0), acc0[r]);
                acc1[r] = _mm512_fmadd_ps(f1, _mm512_mul_ps(sx, sw1), acc1[r]);
            }
        }
        let (bias0, bias1) = (_mm512_loadu_ps(ops.bias), _mm512_loadu_ps(ops.bias.add(NR)));
        for r in 0..R {
            let row = ops.c.add(r * ops.ldc);
            let mut v0 = _mm512_add_ps(acc0[r], bias0);
            let mut v1 = _mm512_add_ps(acc1[r], bias1);
            if ops.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row.add(NR)));
            }
            _mm512_storeu_ps(row, v0);
            _mm512_storeu_ps(row.add(NR), v1);
        }
    }
}
