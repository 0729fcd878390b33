//! The AVX-512F kernel, on one panel or two side by side.

use super::{Epilogue, MR_MAX, NR};

/// One `mr × 2·NR` tile (`mr` ≤ the AVX-512 kernel's rows) of two whole
/// panels, `b` and `b + panel_stride`, over `kc` input indices, on the
/// AVX-512 kernel.
///
/// # Safety
///
/// As [`tile`] for both panels, with `cols == NR` each, the bias pointer
/// valid for `2·NR` values, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile_pair(
    mr: usize,
    kc: usize,
    a: *const f32,
    lda: usize,
    b: (*const f32, usize, usize),
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    debug_assert!(mr <= MR_MAX);
    // SAFETY: forwarded from the caller.
    unsafe { by_rows!(mr, avx512, 2; kc, a, lda, b, c, ldc, epilogue) }
}

/// The AVX-512F kernel on `P` panels side by side (`panel_stride` apart):
/// `R` × `P`·16 accumulators in `R·P` registers, one load from each panel
/// and one broadcast per row for `R·P` multiply-adds. One panel (P = 1)
/// and two (P = 2, [`tile_pair`]) do the same multiply-adds in the same
/// order per output, so the same results bit for bit.
///
/// # Safety
///
/// As [`tile`] for each of the `P` panels, with `cols == NR` each, the bias
/// pointer valid for `P·NR` values, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn avx512<const R: usize, const P: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    (b, panel_stride, ldb): (*const f32, usize, usize),
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    use std::arch::x86_64::*;
    // SAFETY: every pointer stays within the extents the caller
    // promised (whole body); loads and stores are unaligned-tolerant.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        let mut bp = b;
        let mut ap = a;
        for _ in 0..kc {
            let mut w = [_mm512_setzero_ps(); P];
            for (p, w) in w.iter_mut().enumerate() {
                *w = _mm512_loadu_ps(bp.add(p * panel_stride));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*ap.add(r * lda));
                for (acc, w) in acc.iter_mut().zip(&w) {
                    *acc = _mm512_fmadd_ps(v, *w, *acc);
                }
            }
            bp = bp.add(ldb);
            ap = ap.add(1);
        }
        if let Some(bias) = epilogue.bias {
            for p in 0..P {
                let bias = _mm512_loadu_ps(bias.add(p * NR));
                for acc in acc.iter_mut() {
                    acc[p] = _mm512_add_ps(acc[p], bias);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (p, acc) in acc.iter().enumerate() {
                let out = c.add(r * ldc + p * NR);
                let v = if epilogue.add_existing {
                    _mm512_add_ps(*acc, _mm512_loadu_ps(out))
                } else {
                    *acc
                };
                _mm512_storeu_ps(out, v);
            }
        }
    }
}
