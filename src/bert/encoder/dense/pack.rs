//! Packing a matrix into the panels the kernels read: rows (a weight, or
//! attention's keys) transposed into panels, or columns (attention's
//! values) copied as they lie.

#[cfg(target_arch = "x86_64")]
use super::avx2::pack_rows_avx2;
use super::{Kernel, NR};

/// Packs an `n × k` matrix read transposed, `w[j][kk] = src[j·stride + kk]`
/// times `scale`, into the panels [`product`] reads (the layout of
/// [`PackedWeights`]): `out` holds `n.div_ceil(NR) × k × NR` values, its
/// padding columns zero. Attention packs a head's keys so (the scores are
/// `q·kᵀ`). `kernel` picks the transposition: AVX2 moves 8 × 8 blocks
/// through registers, where the plain loop's scattered stores took a tenth
/// of attention's time.
///
/// # Safety
///
/// `src` is valid for reads of `n` rows of stride `stride` with `k` values
/// each; `kernel` one this CPU runs ([`Kernel::runs_here`]).
pub(in super::super) unsafe fn pack_rows(
    src: *const f32,
    (n, k): (usize, usize),
    stride: usize,
    scale: f32,
    out: &mut Vec<f32>,
    kernel: Kernel,
) {
    // Every value of the first n columns is written below: only the last
    // panel's padding columns need zeros (the buffer is reused per task).
    out.resize(n.div_ceil(NR) * k * NR, 0.0);
    if !n.is_multiple_of(NR) {
        let last = &mut out[(n / NR) * k * NR..];
        for row in last.chunks_exact_mut(NR) {
            row[n % NR..].fill(0.0);
        }
    }
    // Rows and columns the blocks below leave to the plain loop.
    let (n8, k8) = match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded from the caller; `out` is sized above.
        Kernel::Avx2 | Kernel::Avx512 => unsafe { pack_rows_avx2(src, (n, k), stride, scale, out) },
        Kernel::Generic => (0, 0),
    };
    for j in 0..n {
        let from = if j < n8 { k8 } else { 0 };
        // SAFETY: row j of `src` holds k values (caller).
        let row = unsafe { std::slice::from_raw_parts(src.add(j * stride + from), k - from) };
        put_row(&mut out[from * NR..], k, j, row, scale);
    }
}

/// Writes row `j` of an `n × k` matrix (its values `row`, from some input
/// index on, times `scale`) into `panels` laid out as [`PackedWeights`]
/// stores them: panel `j / NR`, column `j % NR`, one value per input.
/// `panels` starts at the first value's input index of panel 0.
pub(super) fn put_row(panels: &mut [f32], k: usize, j: usize, row: &[f32], scale: f32) {
    let (panel, col) = (j / NR, j % NR);
    let panel = &mut panels[panel * k * NR..];
    for (kk, w) in row.iter().enumerate() {
        panel[kk * NR + col] = w * scale;
    }
}

/// Packs a `k × n` matrix read as it lies, `w[j][kk] = src[kk·stride + j]`,
/// into [`product`]'s panels: each panel's row `kk` is `NR` consecutive
/// values of source row `kk`. Attention packs a head's values so (the
/// context is `p·v`).
///
/// # Safety
///
/// `src` is valid for reads of `k` rows of stride `stride` with `n` values
/// each.
pub(in super::super) unsafe fn pack_columns(
    src: *const f32,
    k: usize,
    n: usize,
    stride: usize,
    out: &mut Vec<f32>,
) {
    out.clear();
    out.resize(n.div_ceil(NR) * k * NR, 0.0);
    for kk in 0..k {
        // SAFETY: row kk of `src` holds n values (caller).
        let row = unsafe { std::slice::from_raw_parts(src.add(kk * stride), n) };
        for (p, cols) in row.chunks(NR).enumerate() {
            let at = p * k * NR + kk * NR;
            out[at..at + cols.len()].copy_from_slice(cols);
        }
    }
}
