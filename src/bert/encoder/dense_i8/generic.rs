//! The portable int8 kernel, for any CPU.

use super::{Operands, BLOCK, GROUP, NR};

/// # Safety
///
/// As [`Int8Kernel::run`].
pub(super) unsafe fn generic<const R: usize>(blocks: usize, ops: Operands) {
    let mut out = [[0f32; NR]; R];
    for blk in 0..blocks {
        let mut sums = [[0i32; NR]; R];
        for g in blk * BLOCK / GROUP..(blk + 1) * BLOCK / GROUP {
            for (r, sums) in sums.iter_mut().enumerate() {
                for (c, s) in sums.iter_mut().enumerate() {
                    for i in 0..GROUP {
                        // SAFETY: within the extents the caller promised.
                        let (x, w) = unsafe {
                            (
                                *ops.a.add(r * ops.lda + g * GROUP + i) as i32,
                                *ops.b.add(g * NR * GROUP + c * GROUP + i) as i32,
                            )
                        };
                        *s += x * w;
                    }
                }
            }
        }
        for (r, (sums, out)) in sums.iter().zip(out.iter_mut()).enumerate() {
            // SAFETY: as above.
            let sx = unsafe { *ops.x_scales.add(r * blocks + blk) };
            for (c, (s, o)) in sums.iter().zip(out.iter_mut()).enumerate() {
                // SAFETY: as above.
                let (sw, off) = unsafe {
                    (
                        *ops.w_scales.add(blk * NR + c),
                        *ops.offsets.add(blk * NR + c),
                    )
                };
                *o += (s - off) as f32 * (sx * sw);
            }
        }
    }
    for (r, out) in out.iter().enumerate() {
        for (j, v) in out.iter().enumerate() {
            // SAFETY: within the extents the caller promised.
            unsafe {
                let c = ops.c.add(r * ops.ldc + j);
                let v = v + *ops.bias.add(j);
                *c = if ops.accumulate { *c + v } else { v };
            }
        }
    }
}
