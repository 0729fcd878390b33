//! Integer dense products for CPUs with VNNI: `y = [y +] x·Wᵀ + b` with the
//! weights in int8 and each row of `x` quantised to unsigned 8 bits as the
//! product starts (zero point 128), both with one scale per [`BLOCK`]
//! inputs (per output column for the weights, per row for the
//! activations), multiplied with `vpdpbusd` (u8 × s8, four products summed
//! into each `i32` lane, no intermediate saturation).
//!
//! Why blocks: BERT's hidden states carry a few outlier channels (in
//! all-MiniLM-L6-v2, channel 99 reaches 20–40× the median channel's
//! magnitude in every layer). With one scale per row, that channel sets
//! the step for all 384 values and the vectors fell to a minimum / mean
//! cosine of 0.983 / 0.9945 against `f32` on the golden texts; per block of
//! 64, to 0.9974 / 0.9990; per block of 32, 0.9984 / 0.9993. Each block's
//! `i32` sums are converted and scaled into `f32` accumulators as the
//! block ends.
//!
//! Why only with VNNI: without it the same product needs `vpmaddubsw`,
//! whose `i16` pair sums saturate for 8-bit activations (255 · 127 · 2 >
//! 32,767) and which measured 0.6× the `f32` product on AVX2
//! (docs/benchmarks.md). Elsewhere int8 layers keep their weights in
//! [`super::int8::Int8Weights`] and expand them for the `f32` product.
//!
//! Layout: as [`super::dense`], panels of [`NR`] output columns; within a
//! panel, each group of four inputs holds the 16 columns' four weights side
//! by side (64 bytes), the order `vpdpbusd` reads. No cache blocking of K:
//! a panel of K = 1,536 inputs is 24 KiB, within L1.
//!
//! `y[r, j] = Σ_blocks s_x[r, b] · s_w[j, b] · (Σ_{k ∈ b} q_x[r, k] · q_w[j, k] − 128 · Σ_{k ∈ b} q_w[j, k]) + b[j]`,
//! where `q_x` holds the shifted (unsigned) activations.

use rayon::prelude::*;

use super::dense::{MR, NR};
use super::kernels;
use super::TaskPtr;

// One file per instruction set.
#[cfg(target_arch = "x86_64")]
mod avx512;
mod generic;
#[cfg(target_arch = "x86_64")]
mod vnni256;

#[cfg(target_arch = "x86_64")]
use avx512::avx512_vnni_pair;
use generic::generic;
#[cfg(target_arch = "x86_64")]
use vnni256::{avx512_vnni, avx_vnni};

/// Inputs summed into one `i32` lane.
const GROUP: usize = 4;
/// Inputs sharing one scale (on both sides).
pub(crate) const BLOCK: usize = 32;
/// The activations' zero point: `q_x = round(x / s_x) + 128`.
const ZERO: i32 = 128;

/// An `out × in` weight quantised per output column and packed for the
/// VNNI kernel, with its bias.
#[derive(Debug, Clone)]
pub(crate) struct Int8Panels {
    buf: Vec<i8>,
    start: usize,
    /// Per panel, block and column (`panels × blocks × NR`): the weight
    /// scale.
    scales: Vec<f32>,
    /// Per panel, block and column: `ZERO · Σ_{k ∈ block} q_w[j, k]`, the
    /// zero point's share of the block's sum.
    offsets: Vec<i32>,
    bias: Vec<f32>,
    inputs: usize,
    /// `inputs` rounded up to whole blocks.
    padded: usize,
    outputs: usize,
}

/// A batch's activations in 8 bits, reused across products: `rows ×
/// padded` values and `rows × blocks` scales.
#[derive(Debug, Default)]
pub(crate) struct Quantized {
    values: Vec<u8>,
    scales: Vec<f32>,
}

impl Int8Panels {
    /// Quantises `weight` (`outputs × inputs`, row-major): each output
    /// column's weights, per block of [`BLOCK`] inputs, scaled by their
    /// largest magnitude to ±127.
    pub(crate) fn new(weight: &[f32], bias: &[f32], inputs: usize) -> Self {
        let outputs = bias.len();
        assert!(inputs > 0, "a layer without inputs");
        assert_eq!(weight.len(), inputs * outputs, "weight is not out × in");
        let padded = inputs.next_multiple_of(BLOCK);
        let blocks = padded / BLOCK;
        let panels = outputs.div_ceil(NR);
        let mut buf = vec![0i8; panels * NR * padded + 64];
        let start = (buf.as_ptr() as usize).next_multiple_of(64) - buf.as_ptr() as usize;
        let mut scales = vec![1f32; panels * blocks * NR];
        let mut offsets = vec![0i32; panels * blocks * NR];
        {
            let data = &mut buf[start..start + panels * NR * padded];
            for (j, row) in weight.chunks_exact(inputs).enumerate() {
                let (p, col) = (j / NR, j % NR);
                let panel = &mut data[p * NR * padded..(p + 1) * NR * padded];
                for (b, values) in row.chunks(BLOCK).enumerate() {
                    let max = values.iter().fold(0f32, |m, w| m.max(w.abs()));
                    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                    let mut sum = 0i32;
                    for (i, w) in values.iter().enumerate() {
                        let k = b * BLOCK + i;
                        // |w / scale| <= 127 by construction.
                        let q = kernels::round_to_i32(w / scale).clamp(-127, 127);
                        sum += q;
                        panel[(k / GROUP) * NR * GROUP + col * GROUP + k % GROUP] = q as i8;
                    }
                    scales[(p * blocks + b) * NR + col] = scale;
                    offsets[(p * blocks + b) * NR + col] = ZERO * sum;
                }
            }
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(panels * NR, 0.0);
        Int8Panels {
            buf,
            start,
            scales,
            offsets,
            bias: padded_bias,
            inputs,
            padded,
            outputs,
        }
    }

    /// Bytes held (weights, scales, offsets, bias).
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len() + 4 * (self.scales.len() + self.offsets.len() + self.bias.len())
    }

    fn panels(&self) -> usize {
        self.outputs.div_ceil(NR)
    }

    fn data(&self) -> &[i8] {
        &self.buf[self.start..self.start + self.panels() * NR * self.padded]
    }

    /// `out = x·Wᵀ + b`, or `out += …` with `accumulate`; `x` is
    /// quantised into `scratch` first.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        out: &mut [f32],
        accumulate: bool,
        scratch: &mut Quantized,
        kernel: Int8Kernel,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        assert_eq!(x.len() % k, 0, "input is not rows × inputs");
        let rows = x.len() / k;
        assert_eq!(out.len(), rows * n, "output is not rows × outputs");
        if rows == 0 || n == 0 {
            return;
        }
        // A kernel this CPU lacks would be undefined behaviour: refuse it.
        assert!(kernel.runs_here(), "{kernel:?} does not run on this CPU");
        quantize_rows(x, k, self.padded, scratch);
        let blocks = self.padded / BLOCK;
        let block = ((96 * 1024 / self.padded).clamp(MR, 32 * MR) / MR) * MR;
        let row_blocks = rows.div_ceil(block);
        let panels = self.panels();
        let threads = rayon::current_num_threads().max(1);
        let groups = if threads == 1 || rows * n * k < 1 << 21 {
            1
        } else {
            (2 * threads).div_ceil(row_blocks).min(panels)
        };
        let per_group = panels.div_ceil(groups);
        let groups = panels.div_ceil(per_group);
        let out_ptr = TaskPtr(out.as_mut_ptr());
        let q: &Quantized = scratch;
        let run = |task: usize| {
            let (rb, group) = (task / groups, task % groups);
            let r0 = rb * block;
            let r1 = (r0 + block).min(rows);
            let p0 = group * per_group;
            let p1 = (p0 + per_group).min(panels);
            let mut p = p0;
            while p < p1 {
                // Two whole panels in one tile where the kernel has such a
                // tile.
                let pair = kernel.pairs() && p + 1 < p1 && (p + 2) * NR <= n;
                let cols = NR.min(n - p * NR);
                let mut r = r0;
                while r < r1 {
                    let mr = MR.min(r1 - r);
                    // SAFETY: rows r..r+mr of the quantised activations
                    // (stride `padded`) and panel p (padded × NR bytes; and
                    // p + 1 for a pair) exist; the output tile (rows
                    // r..r+mr, columns p·NR..p·NR+cols, or two whole panels'
                    // columns, of the rows × n buffer) belongs to this task
                    // alone (tasks cover disjoint blocks).
                    unsafe {
                        if pair {
                            self.tile_pair(q, blocks, r, mr, p, out_ptr.get(), accumulate)
                        } else {
                            self.tile(kernel, q, blocks, r, mr, p, cols, out_ptr.get(), accumulate)
                        }
                    };
                    r += mr;
                }
                p += if pair { 2 } else { 1 };
            }
        };
        let tasks = row_blocks * groups;
        if tasks == 1 {
            run(0);
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
    }

    /// The operands of a tile at rows `rows` and panels `panels` (their
    /// data checked to exist; the kernel reads panel p + 1's at fixed
    /// distances from panel p's).
    ///
    /// # Safety
    ///
    /// Row `rows.start`, column `panels.start · NR` lies in `out`, a
    /// `rows × outputs` buffer.
    unsafe fn operands(
        &self,
        q: &Quantized,
        blocks: usize,
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        out: *mut f32,
        accumulate: bool,
    ) -> Operands {
        let a = &q.values[rows.start * self.padded..rows.end * self.padded];
        let x_scales = &q.scales[rows.start * blocks..rows.end * blocks];
        let (p0, p1) = (panels.start, panels.end);
        let panel = &self.data()[p0 * NR * self.padded..p1 * NR * self.padded];
        let w_scales = &self.scales[p0 * blocks * NR..p1 * blocks * NR];
        let offsets = &self.offsets[p0 * blocks * NR..p1 * blocks * NR];
        let n = self.outputs;
        Operands {
            a: a.as_ptr(),
            lda: self.padded,
            x_scales: x_scales.as_ptr(),
            b: panel.as_ptr(),
            w_scales: w_scales.as_ptr(),
            offsets: offsets.as_ptr(),
            bias: self.bias[p0 * NR..p1 * NR].as_ptr(),
            // SAFETY: row rows.start, column p0·NR lies in out (caller).
            c: unsafe { out.add(rows.start * n + p0 * NR) },
            ldc: n,
            accumulate,
        }
    }

    /// One `mr × 2·NR` tile at rows `r..`, panels `p` and `p + 1` (both
    /// whole), on the AVX-512 VNNI kernel.
    ///
    /// # Safety
    ///
    /// As [`tile`](Self::tile), for both panels; the CPU runs
    /// [`Int8Kernel::Avx512Vnni`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_pair(
        &self,
        q: &Quantized,
        blocks: usize,
        r: usize,
        mr: usize,
        p: usize,
        out: *mut f32,
        accumulate: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: forwarded from the caller.
            let ops = unsafe { self.operands(q, blocks, r..r + mr, p..p + 2, out, accumulate) };
            let next = NR * self.padded;
            // SAFETY: a holds mr rows and the two panels' weights, scales,
            // offsets and bias lie where `operands` checked; the output
            // tile is this task's alone (caller).
            unsafe {
                match mr {
                    1 => avx512_vnni_pair::<1>(blocks, ops, next),
                    2 => avx512_vnni_pair::<2>(blocks, ops, next),
                    3 => avx512_vnni_pair::<3>(blocks, ops, next),
                    4 => avx512_vnni_pair::<4>(blocks, ops, next),
                    5 => avx512_vnni_pair::<5>(blocks, ops, next),
                    _ => avx512_vnni_pair::<MR>(blocks, ops, next),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (q, blocks, r, mr, p, out, accumulate);
            unreachable!("pairs run on x86-64 alone");
        }
    }

    /// One `mr × cols` tile at rows `r..`, panel `p`.
    ///
    /// # Safety
    ///
    /// As in [`forward`](Self::forward): the tile lies in `out` and no one
    /// else writes it; `kernel` runs on this CPU.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        &self,
        kernel: Int8Kernel,
        q: &Quantized,
        blocks: usize,
        r: usize,
        mr: usize,
        p: usize,
        cols: usize,
        out: *mut f32,
        accumulate: bool,
    ) {
        // SAFETY: forwarded from the caller.
        let mut ops = unsafe { self.operands(q, blocks, r..r + mr, p..p + 1, out, accumulate) };
        let n = self.outputs;
        if cols < NR {
            // A partial panel: run the full tile on a copy, keep `cols`.
            let mut tmp = [0f32; MR * NR];
            for i in 0..mr {
                // SAFETY: row r+i of the tile has `cols` values (caller).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        ops.c.add(i * n),
                        tmp[i * NR..].as_mut_ptr(),
                        cols,
                    )
                };
            }
            let c = ops.c;
            ops.c = tmp.as_mut_ptr();
            ops.ldc = NR;
            // SAFETY: as below, with tmp an mr × NR tile of stride NR.
            unsafe { kernel.run(mr, blocks, ops) };
            for i in 0..mr {
                // SAFETY: as above.
                unsafe {
                    std::ptr::copy_nonoverlapping(tmp[i * NR..].as_ptr(), c.add(i * n), cols)
                };
            }
        } else {
            // SAFETY: a holds mr rows of `padded` bytes and x_scales mr
            // rows of `blocks` scales; the panel holds padded × NR bytes,
            // its scales and offsets blocks × NR values each, the bias NR
            // values; the output tile (mr rows of stride n, NR columns)
            // lies in out and is this task's alone (caller).
            unsafe { kernel.run(mr, blocks, ops) };
        }
    }
}

/// What a tile multiplies and where it goes: `a`, rows of quantised
/// activations (stride `lda`) with `x_scales` (one row of `blocks` scales
/// per row); `b`, a panel, with `w_scales` and `offsets` (`blocks × NR`
/// each); `bias` (`NR` values) added to the tile, which is stored to `c`
/// (rows of stride `ldc`, `NR` columns), or added to what `c` holds with
/// `accumulate`.
#[derive(Clone, Copy)]
struct Operands {
    a: *const u8,
    lda: usize,
    x_scales: *const f32,
    b: *const i8,
    w_scales: *const f32,
    offsets: *const i32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
}

/// Quantises each row of `x` (`k` wide) to `padded` unsigned bytes, one
/// scale per block.
fn quantize_rows(x: &[f32], k: usize, padded: usize, q: &mut Quantized) {
    let rows = x.len() / k;
    let blocks = padded / BLOCK;
    q.values.resize(rows * padded, 0);
    q.scales.resize(rows * blocks, 0.0);
    let step = |(x, (values, scales)): (&[f32], (&mut [u8], &mut [f32]))| {
        kernels::quantize_row(x, values, scales, BLOCK)
    };
    if rows * k < 1 << 16 || rayon::current_num_threads() <= 1 {
        x.chunks_exact(k)
            .zip(
                q.values
                    .chunks_exact_mut(padded)
                    .zip(q.scales.chunks_exact_mut(blocks)),
            )
            .for_each(step);
    } else {
        x.par_chunks_exact(k)
            .zip(
                q.values
                    .par_chunks_exact_mut(padded)
                    .zip(q.scales.par_chunks_exact_mut(blocks)),
            )
            .with_min_len(64)
            .for_each(step);
    }
}

/// Which integer kernel runs the tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Int8Kernel {
    /// Portable Rust, the reference the others are tested against (CPUs
    /// without VNNI expand int8 weights for the `f32` kernel instead: this
    /// one would be slower than that).
    #[cfg_attr(not(test), allow(dead_code))]
    Generic,
    /// AVX-512 VNNI (Ice Lake and later, Zen 4 and later): two panels at a
    /// time on 512-bit registers, a single panel on 256-bit ones.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// AVX-VNNI (Alder Lake and later, Zen 5 and later).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
}

impl Int8Kernel {
    /// A VNNI kernel this CPU runs, if it has one.
    pub(crate) fn vnni() -> Option<Int8Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static KERNEL: OnceLock<Option<Int8Kernel>> = OnceLock::new();
            *KERNEL.get_or_init(|| {
                // The kernels are compiled with AVX2 and FMA too.
                let base = std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma");
                if crate::env::no_vnni() || !base {
                    None
                } else if std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    Some(Int8Kernel::Avx512Vnni)
                } else if std::arch::is_x86_feature_detected!("avxvnni") {
                    Some(Int8Kernel::AvxVnni)
                } else {
                    None
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    /// Whether the kernel has a tile of two whole panels: AVX-512 VNNI,
    /// whose 32 registers hold 6 rows × 2 panels of integer sums and of
    /// `f32` accumulators. One panel at a time, each row's `vpdpbusd`
    /// chain (8 a block, each waiting for the one before) kept 6 chains
    /// in flight, under what two VNNI units need.
    pub(crate) fn pairs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Int8Kernel::Avx512Vnni {
            return true;
        }
        false
    }

    /// Whether this CPU runs the kernel.
    pub(crate) fn runs_here(self) -> bool {
        self == Int8Kernel::Generic || Int8Kernel::vnni() == Some(self)
    }

    /// `c[r][j] [+]= bias[j] + Σ_blocks s_x[r, b] · s_w[b, j] · (Σ_{k ∈ b} a[r, k] · b[k, j] − offset[b, j])`
    /// for `mr` rows over `blocks` blocks.
    ///
    /// # Safety
    ///
    /// The operands are valid for `mr` rows and `blocks` blocks as
    /// [`Operands`] describes; the kernel runs on this CPU.
    unsafe fn run(self, mr: usize, blocks: usize, ops: Operands) {
        macro_rules! by_rows {
            ($f:ident) => {
                // SAFETY: forwarded from the caller.
                unsafe {
                    match mr {
                        1 => $f::<1>(blocks, ops),
                        2 => $f::<2>(blocks, ops),
                        3 => $f::<3>(blocks, ops),
                        4 => $f::<4>(blocks, ops),
                        5 => $f::<5>(blocks, ops),
                        _ => $f::<MR>(blocks, ops),
                    }
                }
            };
        }
        match self {
            Int8Kernel::Generic => by_rows!(generic),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx512Vnni => by_rows!(avx512_vnni),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::AvxVnni => by_rows!(avx_vnni),
        }
    }
}

#[cfg(test)]
mod tests;
