//! The portable kernel, for any CPU.

use super::{Epilogue, NR};

/// The portable kernel: the same tile in plain loops.
///
/// # Safety
///
/// As [`tile`], with `cols == NR`.
// Not inlined into `tile`: its accumulators would give `tile` a stack
// frame on every call, whichever kernel it dispatches to.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn generic<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    let mut acc = [[0f32; NR]; R];
    for k in 0..kc {
        // SAFETY: b holds kc × NR values, a R rows of kc values (caller).
        let w = unsafe { &*(b.add(k * ldb) as *const [f32; NR]) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let v = unsafe { *a.add(r * lda + k) };
            for (s, w) in acc.iter_mut().zip(w) {
                *s += v * w;
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: row r of the tile holds NR values (caller).
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), NR) };
        for (j, (o, s)) in row.iter_mut().zip(acc).enumerate() {
            let mut v = *s;
            if let Some(bias) = epilogue.bias {
                // SAFETY: the bias holds NR values (caller).
                v += unsafe { *bias.add(j) };
            }
            *o = if epilogue.add_existing { *o + v } else { v };
        }
    }
}
