//! Dense products `y = [y +] x·Wᵀ + b` on weights packed once, at load, into
//! the layout the micro-kernel reads.
//!
//! Written by hand because the `gemm` crate, good as it is for arbitrary
//! products, re-packs the weight matrix on every call and reached 63–70
//! GFLOP/s of this machine's ~157 on the encoder's shapes (docs/benchmarks.md),
//! and no maintained crate packs a right-hand side once and reuses it. The
//! shapes here are narrow: K (the input width) is a few hundred to a few
//! thousand, N (the output width) a multiple of 16 in every model seen, M
//! (tokens of a batch) anything from 1 to tens of thousands.
//!
//! Layout: the `out × in` weight is cut into panels of [`NR`] output columns;
//! a panel stores, for each input index `k`, its 16 weights side by side, so
//! the kernel reads one contiguous stream per panel. The kernel computes a
//! tile of [`Kernel::rows`] × [`NR`] outputs in registers (AVX2: 6 rows in
//! 12 accumulators, two loads of the panel per `k`; AVX-512: 8 rows of two
//! panels side by side in 16 accumulators, one load from each panel, or of
//! one panel where a single one is left), one broadcast of `x` per row and
//! `k`, and adds
//! the bias (and the residual already in the output) as it stores. K is walked in
//! blocks of [`KC`] so that one panel's block stays in the L1 cache while
//! the rows of a task stream past it; the rows of a task ([`row_block`])
//! stay in L2.
//!
//! Threads: tasks are blocks of rows (or, when a batch has too few rows to
//! give every thread two blocks, blocks of rows × groups of panels), run on
//! the current rayon pool; nothing here assumes a number of cores.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::kernels::Level;
use super::TaskPtr;

/// Calls kernel `$f` instantiated for `$mr` rows (1 to [`MR_MAX`]), and
/// for `$panels` panels where the kernel takes a panel count.
// Defined before the modules below, which use it too.
macro_rules! by_rows {
    ($mr:expr, $f:ident $(, $panels:literal)?; $($arg:expr),*) => {
        match $mr {
            1 => $f::<1 $(, $panels)?>($($arg),*),
            2 => $f::<2 $(, $panels)?>($($arg),*),
            3 => $f::<3 $(, $panels)?>($($arg),*),
            4 => $f::<4 $(, $panels)?>($($arg),*),
            5 => $f::<5 $(, $panels)?>($($arg),*),
            6 => $f::<6 $(, $panels)?>($($arg),*),
            7 => $f::<7 $(, $panels)?>($($arg),*),
            _ => $f::<MR_MAX $(, $panels)?>($($arg),*),
        }
    };
}

// One file per instruction set (the kernels and the AVX2 transposition of
// the packing), the packing itself beside them.
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod generic;
mod pack;

#[cfg(target_arch = "x86_64")]
use avx2::avx2;
#[cfg(target_arch = "x86_64")]
use avx512::{avx512, tile_pair};
use generic::generic;
use pack::put_row;
pub(super) use pack::{pack_columns, pack_rows};

/// Output columns per panel (two AVX registers of `f32`).
pub(crate) const NR: usize = 16;
/// Rows per register tile of the AVX2 and portable kernels (and of the
/// int8 kernels).
pub(crate) const MR: usize = 6;
/// Rows per register tile of the AVX-512 kernel, the most of any kernel.
const MR_MAX: usize = 8;
/// Input indices per cache block: a panel's block is `KC × NR × 4` = 16 KiB.
pub(crate) const KC: usize = 256;

/// An `out × in` weight matrix packed into panels, with its bias padded to
/// whole panels. 64-byte aligned so that no panel load crosses a cache line.
#[derive(Debug, Clone)]
pub(crate) struct PackedWeights {
    buf: Vec<f32>,
    /// Start of the aligned data in `buf`.
    start: usize,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// Floats of padding that let the data start on a 64-byte boundary.
const ALIGN: usize = 16;

impl PackedWeights {
    /// Packs `weight` (`outputs × inputs`, row-major, PyTorch's layout) and
    /// `bias` (`outputs`).
    pub(crate) fn new(weight: &[f32], bias: &[f32], inputs: usize) -> Self {
        let outputs = bias.len();
        assert_eq!(weight.len(), inputs * outputs, "weight is not out × in");
        Self::from_rows(outputs, inputs, bias, |j, row| {
            row.copy_from_slice(&weight[j * inputs..(j + 1) * inputs])
        })
    }

    /// Packs `outputs` rows of `inputs` weights, each written into a
    /// scratch row by `row(j, out)` (an int8 layer expands its rows so).
    pub(crate) fn from_rows(
        outputs: usize,
        inputs: usize,
        bias: &[f32],
        mut row: impl FnMut(usize, &mut [f32]),
    ) -> Self {
        assert_eq!(bias.len(), outputs, "one bias per output");
        let panels = outputs.div_ceil(NR);
        let mut buf = vec![0f32; panels * NR * inputs + ALIGN];
        let start = (buf.as_ptr() as usize).next_multiple_of(64) - buf.as_ptr() as usize;
        let start = start / 4;
        let mut scratch = vec![0f32; inputs];
        {
            let data = &mut buf[start..start + panels * NR * inputs];
            for j in 0..outputs {
                row(j, &mut scratch);
                put_row(data, inputs, j, &scratch, 1.0);
            }
        }
        let mut padded = bias.to_vec();
        padded.resize(panels * NR, 0.0);
        PackedWeights {
            buf,
            start,
            bias: padded,
            inputs,
            outputs,
        }
    }

    /// Bytes of weights held (padding included).
    pub(crate) fn bytes(&self) -> usize {
        4 * (self.buf.len() + self.bias.len())
    }

    fn panels(&self) -> usize {
        self.outputs.div_ceil(NR)
    }

    fn data(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.panels() * NR * self.inputs]
    }

    /// `out = x·Wᵀ + b`, or `out += x·Wᵀ + b` with `accumulate` (the
    /// residual already in `out`). `x` is `rows × inputs`, `out` is
    /// `rows × outputs`, both row-major.
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32], accumulate: bool) {
        self.forward_with(x, out, accumulate, kernel_for_this_cpu());
    }

    pub(crate) fn forward_with(
        &self,
        x: &[f32],
        out: &mut [f32],
        accumulate: bool,
        kernel: Kernel,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        assert!(k > 0, "a product over no inputs");
        // A kernel this CPU lacks would be undefined behaviour: refuse it.
        assert!(kernel.runs_here(), "{kernel:?} does not run on this CPU");
        assert_eq!(x.len() % k, 0, "input is not rows × inputs");
        let rows = x.len() / k;
        assert_eq!(out.len(), rows * n, "output is not rows × outputs");
        if rows == 0 || n == 0 {
            return;
        }
        let panels = self.panels();
        let threads = rayon::current_num_threads().max(1);
        let mr = kernel.rows();
        let row_blocks = row_blocks(rows, k, threads, mr);

        // Small products on one thread: a task costs a few microseconds to
        // hand over, about 100k multiply-adds here.
        let flops = rows * n * k;
        let groups = if threads == 1 || flops < 1 << 20 {
            1
        } else {
            // Two tasks a thread at least, so that an uneven last block
            // does not leave a core idle for long.
            (2 * threads).div_ceil(row_blocks).min(panels)
        };
        let per_group = panels.div_ceil(groups);
        let groups = panels.div_ceil(per_group);
        let tasks = row_blocks * groups;
        let out_ptr = TaskPtr(out.as_mut_ptr());
        let run = |task: usize| {
            let (rb, group) = (task / groups, task % groups);
            let range = block_rows(rb, rows, row_blocks, mr);
            let (r0, r1) = (range.start, range.end);
            let p0 = group * per_group;
            let p1 = (p0 + per_group).min(panels);
            // SAFETY: task (rb, group) writes rows r0..r1 × panels p0..p1 of
            // `out` and nothing else; the tasks' blocks are disjoint. Every
            // index below stays inside `x` (rows × k), `out` (rows × n), the
            // packed data (panels × NR × k) and the padded bias.
            unsafe { self.block(x, out_ptr.get(), r0..r1, p0..p1, accumulate, kernel) }
        };
        if tasks == 1 {
            run(0);
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
    }

    /// One task: rows `rows` × panels `panels` of the output.
    ///
    /// # Safety
    ///
    /// `out` points to a `rows_total × outputs` buffer (where `x` has
    /// `rows_total` rows) that nobody else writes in this block during the
    /// call.
    unsafe fn block(
        &self,
        x: &[f32],
        out: *mut f32,
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        accumulate: bool,
        kernel: Kernel,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        let data = self.data();
        assert!(rows.end * k <= x.len() && panels.end * NR * k <= data.len());
        // Inputs kc0..kc0+KC of rows `rows` against panels `ps`.
        let run = |kc0: usize, ps: std::ops::Range<usize>| {
            let kc = KC.min(k - kc0);
            let first = kc0 == 0;
            let epilogue = Epilogue {
                bias: first.then_some(self.bias.as_ptr()),
                add_existing: !first || accumulate,
            };
            let w = Rhs {
                ptr: data[kc0 * NR..].as_ptr(),
                panel_stride: NR * k,
                ldb: NR,
            };
            // SAFETY: `x` holds rows `rows` of k values (asserted), read from
            // column kc0 for kc values; the panels hold k × NR values each
            // (asserted) and the padded bias NR a panel; the output block
            // (rows `rows` × the panels' columns) lies in `out` and is this
            // task's alone (the caller's promise).
            unsafe {
                tiles(
                    x[rows.start * k + kc0..].as_ptr(),
                    k,
                    rows.len(),
                    (n, ps),
                    kc,
                    w,
                    out.add(rows.start * n),
                    n,
                    epilogue,
                    kernel,
                )
            };
        };
        // The loop order keeps the smaller of the task's two blocks in
        // cache between its uses: with fewer inputs than outputs (Q, K, V
        // and the feed-forward's first product), panel by panel over all of
        // K, so that a panel's output columns (rows × 64 bytes) stay in L1
        // from one block of K to the next and the input rows (rows × K) in
        // L2; otherwise (the feed-forward's output) block of K by block of
        // K over every panel, so that the input rows' block of K stays in
        // L2 and the output block (rows × N) with it. Panel by panel
        // measured 1–3% faster on Q, K, V and the feed-forward's first
        // product, and the same on the two others (docs/benchmarks.md).
        if k <= n {
            for p in panels.clone().step_by(2) {
                for kc0 in (0..k).step_by(KC) {
                    run(kc0, p..(p + 2).min(panels.end));
                }
            }
        } else {
            for kc0 in (0..k).step_by(KC) {
                run(kc0, panels.clone());
            }
        }
    }
}

/// The right-hand side of [`product`]: panel `p` (output columns
/// `p·NR..p·NR+NR`) starts at `ptr + p·panel_stride`, and its row `kk` (the
/// `NR` weights of input `kk`) at `+ kk·ldb`. Packed panels ([`pack_rows`])
/// have `panel_stride = k·NR` and `ldb = NR`; a matrix whose rows already
/// hold the columns side by side (attention's values) is read in place
/// with `panel_stride = NR` and `ldb` its row stride.
#[derive(Clone, Copy)]
pub(super) struct Rhs {
    pub(super) ptr: *const f32,
    pub(super) panel_stride: usize,
    pub(super) ldb: usize,
}

impl Rhs {
    /// Panels packed by [`pack_rows`] for `k` inputs.
    pub(super) fn packed(panels: &[f32], k: usize) -> Rhs {
        Rhs {
            ptr: panels.as_ptr(),
            panel_stride: k * NR,
            ldb: NR,
        }
    }
}

/// `c = a·wᵀ`, or `c += a·wᵀ` with `accumulate`, on one thread: `a` is
/// `m × k` (row stride `lda`), `w` is `n × k` as [`Rhs`] lays it out, `c` is
/// `m × n` (row stride `ldc`). The small per-head products of attention,
/// through the dense layers' micro-kernel.
///
/// # Safety
///
/// `a` is valid for reads of `m` rows of stride `lda` with `k` values each;
/// `c` for reads and writes of `m` rows of stride `ldc` with `n` values
/// each, written by nobody else during the call; `w` for reads of
/// `n.div_ceil(NR)` panels of `k` rows of `NR` values (padding included).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product(
    a: *const f32,
    lda: usize,
    (m, n, k): (usize, usize, usize),
    w: Rhs,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    kernel: Kernel,
) {
    let epilogue = Epilogue {
        bias: None,
        add_existing: accumulate,
    };
    // SAFETY: the caller's promise, for every panel of `w`.
    unsafe {
        tiles(
            a,
            lda,
            m,
            (n, 0..n.div_ceil(NR)),
            k,
            w,
            c,
            ldc,
            epilogue,
            kernel,
        )
    }
}

/// The tiles of `m` rows × `panels` (of an `n`-column output) over `kc`
/// inputs: rows of `a` (stride `lda`) against `w`'s panels into `c`
/// (stride `ldc`, column 0 of the output). `epilogue.bias`, if any, points
/// to panel 0's `NR` bias values (panel p's are `p·NR` further).
///
/// # Safety
///
/// `a` is valid for reads of `m` rows of stride `lda` with `kc` values
/// each; `w` for reads of `kc` rows of each panel in `panels`; `c` for
/// reads and writes of `m` rows of stride `ldc` in the panels' columns
/// (below `n`), written by nobody else during the call; the bias for
/// `NR` values from each panel's; `kernel` one this CPU runs.
#[allow(clippy::too_many_arguments)]
unsafe fn tiles(
    a: *const f32,
    lda: usize,
    m: usize,
    (n, panels): (usize, std::ops::Range<usize>),
    kc: usize,
    w: Rhs,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
    kernel: Kernel,
) {
    let tile_rows = kernel.rows();
    let mut p = panels.start;
    while p < panels.end {
        // Two whole panels in one tile where the kernel has such a tile.
        let pair = kernel.pairs() && p + 1 < panels.end && (p + 2) * NR <= n;
        let cols = NR.min(n - p * NR);
        let epilogue = Epilogue {
            // SAFETY: inside the bias (the caller's promise).
            bias: epilogue.bias.map(|b| unsafe { b.add(p * NR) }),
            ..epilogue
        };
        let mut r = 0;
        while r < m {
            let mr = tile_rows.min(m - r);
            // SAFETY: rows r..r+mr of `a` and of `c`, columns p·NR..p·NR+cols
            // (p·NR..(p+2)·NR for a pair) of `c` and panel p (and p + 1) lie
            // inside the extents the caller promised.
            let (a, b, c) = unsafe {
                (
                    a.add(r * lda),
                    w.ptr.add(p * w.panel_stride),
                    c.add(r * ldc + p * NR),
                )
            };
            #[cfg(target_arch = "x86_64")]
            if pair {
                // SAFETY: as above; `pairs` holds for AVX-512 alone.
                unsafe { tile_pair(mr, kc, a, lda, (b, w.panel_stride, w.ldb), c, ldc, epilogue) };
                r += mr;
                continue;
            }
            // SAFETY: as above.
            unsafe { tile(kernel, mr, kc, a, lda, b, w.ldb, c, ldc, cols, epilogue) };
            r += mr;
        }
        p += if pair { 2 } else { 1 };
    }
}

/// Rows per task at most: the task's slice of `x` (rows × min(K, KC))
/// stays within about 96 KiB of L2, a multiple of the tile's `mr` rows.
fn row_block(k: usize, mr: usize) -> usize {
    let per_row = 4 * k.min(KC);
    ((96 * 1024 / per_row).clamp(mr, 32 * mr) / mr) * mr
}

/// How many blocks of rows a product of `rows` rows splits into: blocks of
/// at most [`row_block`] rows; when there are at least as many as threads,
/// their number is rounded up to a multiple of the threads (while every
/// block keeps a tile), so that equal blocks end together. 13 blocks on 2
/// threads left one core idle for a thirteenth of every product. (Fewer
/// blocks than threads are split by panels instead, see `forward_with`.)
fn row_blocks(rows: usize, k: usize, threads: usize, mr: usize) -> usize {
    let tiles = rows.div_ceil(mr);
    let blocks = rows.div_ceil(row_block(k, mr));
    if blocks < threads {
        return blocks.max(1);
    }
    blocks.next_multiple_of(threads).min(tiles).max(1)
}

/// What the kernel adds to the tile it computed before storing it.
#[derive(Clone, Copy)]
struct Epilogue {
    /// `NR` bias values (only with the first block of K).
    bias: Option<*const f32>,
    /// Add the value already in the output (the residual, or the earlier
    /// blocks of K).
    add_existing: bool,
}

/// Which micro-kernel runs the tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable Rust, any CPU.
    Generic,
    /// AVX2 + FMA intrinsics (x86-64 CPUs from 2013 on).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F intrinsics (Intel from Skylake-SP, AMD from Zen 4). One
    /// 16-wide register holds a panel's row, so a tile keeps 8 rows of two
    /// panels in 16 accumulators and loads each panel once per `k`
    /// ([`Kernel::pairs`]): on Zen 4, which runs a 512-bit FMA as two
    /// 256-bit halves (the same FLOPs per cycle as AVX2), one panel's tile
    /// measured 2–8% faster than the AVX2 tile, whose loads and broadcasts
    /// crowd the FMAs; on Intel's server cores, with two 512-bit FMA
    /// units, the pair ran whole f32 passes 1.34× faster than one panel's
    /// tile (docs/benchmarks.md).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// Rows of the register tile this kernel computes.
    pub(crate) fn rows(self) -> usize {
        match self {
            Kernel::Generic => MR,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => MR,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => MR_MAX,
        }
    }

    /// Whether the kernel has a tile of two whole panels (32 columns):
    /// AVX-512, whose 32 registers hold its 2 × 8 accumulators. One panel
    /// at a time, each `k` loads 9 values for 8 multiply-adds, which keeps
    /// a core with two 512-bit FMA units (Intel's server cores) at half its
    /// peak; a pair loads 10 for 16.
    pub(crate) fn pairs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512 {
            return true;
        }
        false
    }

    /// Whether this CPU has the instructions the kernel uses: the
    /// element-wise steps' detection ([`Level`], read once), which asks for
    /// the same features (AVX-512 with AVX2 and FMA, which the AVX2
    /// transposition of `pack_rows` beside it needs).
    pub(crate) fn runs_here(self) -> bool {
        match self {
            Kernel::Generic => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Level::detected() >= Level::Avx2,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Level::detected() >= Level::Avx512,
        }
    }

    /// Every kernel this CPU runs, the portable one first.
    pub(crate) fn available() -> Vec<Kernel> {
        let all = [
            Kernel::Generic,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512,
        ];
        all.into_iter().filter(|k| k.runs_here()).collect()
    }
}

/// The fastest kernel this CPU runs, detected once.
pub(crate) fn kernel_for_this_cpu() -> Kernel {
    use std::sync::OnceLock;
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        *Kernel::available()
            .last()
            .expect("the portable kernel runs everywhere")
    })
}

/// One `mr × cols` tile (`mr` ≤ the kernel's rows, `cols` ≤ NR) over `kc`
/// input indices.
///
/// # Safety
///
/// `a` is valid for `mr` rows of stride `lda` with `kc` values each; `b`
/// for `kc` rows of stride `ldb` with `NR` values each; `c` for `mr` rows of stride `ldc` with `cols`
/// values each; a bias pointer for `NR` values; `mr ≤ kernel.rows()`;
/// `kernel` one this CPU runs ([`Kernel::runs_here`]).
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    kernel: Kernel,
    mr: usize,
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    epilogue: Epilogue,
) {
    if cols < NR {
        // A partial panel: the whole tile on a copy, `cols` columns kept.
        // SAFETY: the copy is an mr × NR tile of stride NR; the rest is
        // forwarded from the caller.
        return unsafe {
            through_copy(c, ldc, mr, cols, |copy| {
                tile(kernel, mr, kc, a, lda, b, ldb, copy, NR, NR, epilogue)
            })
        };
    }
    debug_assert!(mr <= kernel.rows(), "{mr} rows for {kernel:?}");
    // SAFETY: forwarded from the caller.
    unsafe {
        match kernel {
            Kernel::Generic => by_rows!(mr, generic; kc, a, lda, b, ldb, c, ldc, epilogue),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => by_rows!(mr, avx2; kc, a, lda, b, ldb, c, ldc, epilogue),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => by_rows!(mr, avx512, 1; kc, a, lda, (b, 0, ldb), c, ldc, epilogue),
        }
    }
}

/// Runs `full` on a copy of the `mr × cols` block at `c` (row stride
/// `ldc`) widened to `NR` columns, then writes the block's `cols` columns
/// back: how [`tile`] runs a partial panel. Out of line, so that `tile`,
/// called for every tile of every product, needs no stack room for the
/// copy (with it, `tile`'s own time was 0.85% of an f32 run; without,
/// 0.43%).
///
/// # Safety
///
/// `c` is valid for reads and writes of `mr` (≤ `MR_MAX`) rows of stride
/// `ldc` with `cols` (≤ `NR`) values each.
#[cold]
#[inline(never)]
unsafe fn through_copy(
    c: *mut f32,
    ldc: usize,
    mr: usize,
    cols: usize,
    full: impl FnOnce(*mut f32),
) {
    let mut copy = [0f32; MR_MAX * NR];
    for r in 0..mr {
        // SAFETY: row r of the block has `cols` values (caller).
        unsafe { std::ptr::copy_nonoverlapping(c.add(r * ldc), copy[r * NR..].as_mut_ptr(), cols) };
    }
    full(copy.as_mut_ptr());
    for r in 0..mr {
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(copy[r * NR..].as_ptr(), c.add(r * ldc), cols) };
    }
}

/// Rows of block `rb` of `blocks` over `rows` rows in tiles of `mr`:
/// tiles `rb·tiles/blocks..(rb+1)·tiles/blocks`, so blocks differ by one
/// tile at most and only the last may end in a partial tile.
fn block_rows(rb: usize, rows: usize, blocks: usize, mr: usize) -> std::ops::Range<usize> {
    let tiles = rows.div_ceil(mr);
    let r0 = (rb * tiles / blocks) * mr;
    let r1 = (((rb + 1) * tiles / blocks) * mr).min(rows);
    r0..r1
}

#[cfg(test)]
mod tests;
