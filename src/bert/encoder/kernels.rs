//! Element-wise steps of the forward pass on plain `f32` slices: GELU (erf),
//! softmax, layer norm and row-wise adds.
//!
//! Written by hand because no maintained crate offers vectorised `exp`/`erf`
//! on slices without pulling in a second tensor library: the loops below are
//! plain Rust, compiled three times, for the baseline target, with AVX2+FMA
//! and with AVX-512F enabled (picked at run time), so LLVM vectorises them 8
//! or 16 wide on the CPUs this crate is meant for and stays correct
//! everywhere else.

/// Defines `$name`, which runs `$wide` (a call to an `#[inline(always)]`
/// generic function) in the copy compiled for the widest vector [`Level`]
/// this CPU has, else `$base` (the same function, or the same with a
/// baseline [`MulAdd`]); and `$at`, the same on a given level (the tests run
/// every copy this CPU has).
macro_rules! dispatch {
    // One copy of `$wide` compiled with `$features`, called; `$at` has
    // asserted that the CPU runs it.
    (@copy $features:literal, $wide:path, ($($arg:ident: $ty:ty),*)) => {{
        #[target_feature(enable = $features)]
        unsafe fn wide($($arg: $ty),*) {
            $wide($($arg),*)
        }
        // SAFETY: the CPU supports the features `wide` was compiled for
        // (asserted by the caller).
        unsafe { wide($($arg),*) }
    }};
    ($name:ident, $at:ident($($arg:ident: $ty:ty),*) => $generic:ident) => {
        dispatch!($name, $at($($arg: $ty),*) => $generic, $generic);
    };
    ($name:ident, $at:ident($($arg:ident: $ty:ty),*) => $wide:path, $base:path) => {
        pub(crate) fn $name($($arg: $ty),*) {
            $at(Level::detected(), $($arg),*)
        }

        fn $at(level: Level, $($arg: $ty),*) {
            // A copy the CPU cannot run would be undefined behaviour.
            assert!(level <= Level::detected(), "{level:?} does not run on this CPU");
            match level {
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => dispatch!(@copy "avx512f,avx2,fma", $wide, ($($arg: $ty),*)),
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => dispatch!(@copy "avx2,fma", $wide, ($($arg: $ty),*)),
                _ => $base($($arg),*),
            }
        }
    };
}

/// The instruction sets the element-wise steps are compiled for, narrowest
/// first. AVX-512 runs 16 lanes where AVX2 runs 8: GELU took 1.8% of an f32
/// run instead of 2.9% on Zen 4 (perf, docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline,
    /// AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (with AVX2 and FMA).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Level {
    /// The widest level this CPU runs, detected once.
    pub(crate) fn detected() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static LEVEL: OnceLock<Level> = OnceLock::new();
            *LEVEL.get_or_init(|| {
                let avx2 = std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma");
                if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                    Level::Avx512
                } else if avx2 {
                    Level::Avx2
                } else {
                    Level::Baseline
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        Level::Baseline
    }
}

/// How `a·b + c` is computed in the polynomials below. Rust never fuses a
/// multiply and an add by itself (the rounding differs), and `f32::mul_add`
/// is a slow libm call where the CPU has no FMA, so each copy of a step
/// picks one: fused, one instruction and half the latency of a dependent
/// chain (GELU's and exp's chains were latency-bound), or separate.
pub(crate) trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// `a.mul_add(b, c)`: for code compiled with FMA.
pub(crate) struct Fused;

/// `a * b + c`: for code compiled without FMA (on aarch64, which always
/// has FMA, only the tests use it).
#[cfg(any(not(target_arch = "aarch64"), test))]
pub(crate) struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

#[cfg(any(not(target_arch = "aarch64"), test))]
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// What the baseline copy of a step uses: every aarch64 CPU has FMA.
#[cfg(target_arch = "aarch64")]
type Baseline = Fused;
#[cfg(not(target_arch = "aarch64"))]
type Baseline = Separate;

/// Lanes of the manual accumulators: enough independent sums for LLVM to
/// keep them in one AVX register (a single running sum would not vectorise
/// without fast-math).
const LANES: usize = 8;

/// `e^x` to about 2 ulp for x <= 88, branch-free so that it vectorises:
/// x = n·ln2 + r with |r| <= ln2/2, e^r from its degree-7 Taylor polynomial
/// (error below 2e-8 on that interval), 2^n put straight into the exponent.
#[inline(always)]
pub(crate) fn exp<M: MulAdd>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2^23 rounds x·log2(e) to the nearest integer (ties to
    // even) and leaves that integer in the low mantissa bits, so n is read
    // from the bits with an integer subtract: `as i32` on a float is a
    // saturating, NaN-checking conversion that LLVM keeps scalar, and it
    // was most of GELU's and softmax's time.
    const SHIFT: f32 = 12_582_912.0;
    // Below -87.3 the result would be subnormal; softmax and erf only need
    // "practically zero" there, 2^-126 is within 1.2e-38 of it.
    let x = x.clamp(-87.3, 88.3);
    let shifted = M::mul_add(x, std::f32::consts::LOG2_E, SHIFT);
    let n = shifted - SHIFT;
    let r = M::mul_add(-n, LN2_LO, M::mul_add(-n, LN2_HI, x));
    // Horner's rule from the highest term, with the reciprocals as
    // constants (a division in the chain doubled its latency).
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = M::mul_add(p, r, c);
    }
    // n is in [-126, 127], so the biased exponent is a normal one.
    let n_int = (shifted.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    f32::from_bits((n_int.wrapping_add(127) as u32) << 23) * p
}

/// The error function, Abramowitz & Stegun 7.1.26: absolute error below
/// 1.5e-7, which keeps the exact-GELU model within 1e-6 of a libm erf.
#[inline(always)]
pub(crate) fn erf<M: MulAdd>(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / M::mul_add(0.327_591_1, a, 1.0);
    let mut poly = 1.061_405_4;
    for c in [-1.453_152, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        poly = M::mul_add(poly, t, c);
    }
    let y = M::mul_add(-(poly * t), exp::<M>(-a * a), 1.0);
    y.copysign(x)
}

#[inline(always)]
fn gelu_generic<M: MulAdd>(x: &mut [f32]) {
    for v in x {
        let half = 0.5 * *v;
        *v = M::mul_add(half, erf::<M>(*v * std::f32::consts::FRAC_1_SQRT_2), half);
    }
}

dispatch!(gelu, gelu_at(x: &mut [f32]) => gelu_generic::<Fused>, gelu_generic::<Baseline>);

/// tanh(y) = 1 - 2/(e^{2y} + 1), exact to a few ulp away from 0 and within
/// 1e-7 absolute near it, which the GELU product then scales by x/2.
#[inline(always)]
fn gelu_tanh_generic<M: MulAdd>(x: &mut [f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    for v in x {
        let y = C * M::mul_add(0.044_715 * *v * *v, *v, *v);
        let tanh = 1.0 - 2.0 / (exp::<M>(2.0 * y) + 1.0);
        *v = 0.5 * *v * (1.0 + tanh);
    }
}

dispatch!(gelu_tanh, gelu_tanh_at(x: &mut [f32]) => gelu_tanh_generic::<Fused>, gelu_tanh_generic::<Baseline>);

#[inline(always)]
fn relu_generic(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

dispatch!(relu, relu_at(x: &mut [f32]) => relu_generic);

/// e^(v − max) of every value of `row`, in place; returns their sum.
#[cfg(any(test, feature = "bench-internals"))]
#[inline(always)]
fn exp_row<M: MulAdd>(row: &mut [f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(*v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, v) in sums.iter_mut().zip(c) {
            *v = exp::<M>(*v - max);
            *s += *v;
        }
    }
    // The last partial group runs as a whole one too (scalar, it cost as
    // much as the rest of a short attention row); lanes past the row's end
    // add nothing.
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut group = [0f32; LANES];
        group[..tail.len()].copy_from_slice(tail);
        for (i, (s, v)) in sums.iter_mut().zip(&mut group).enumerate() {
            *v = exp::<M>(*v - max);
            *s += if i < tail.len() { *v } else { 0.0 };
        }
        tail.copy_from_slice(&group[..tail.len()]);
    }
    sums.iter().sum::<f32>()
}

/// Softmax of each row of `width` values, in place. Rows hold only real
/// tokens (sequences are packed), so no mask is needed. The `gemm`
/// crate's attention baseline uses it (the forward pass runs
/// [`softmax_numerators`] on padded rows).
#[cfg(any(test, feature = "bench-internals"))]
#[inline(always)]
fn softmax_rows_generic<M: MulAdd>(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        let inv = 1.0 / exp_row::<M>(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

#[cfg(any(test, feature = "bench-internals"))]
dispatch!(softmax_rows, softmax_rows_at(x: &mut [f32], width: usize) => softmax_rows_generic::<Fused>, softmax_rows_generic::<Baseline>);

/// Lanes of the groups [`softmax_numerators`] walks its rows in: rows
/// padded to whole groups are read and written a whole group at a time, the
/// values past a row's end masked, where a row's last partial group had
/// been copied out and back (two `memcpy` calls and a narrower copy of the
/// code a row) and `f32::max`'s NaN checks ran in every group.
pub(crate) const SOFTMAX_LANES: usize = 16;

/// The larger of two values: `maxps`'s own semantics (the second when
/// either is NaN), which vectorises to one instruction where `f32::max`
/// adds a NaN check and a blend.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// e^(v − max) of the first `len` values of `row` (a whole number of
/// [`SOFTMAX_LANES`] groups), in place, and zeros after them; returns their
/// sum.
#[inline(always)]
fn exp_row_padded<M: MulAdd>(row: &mut [f32], len: usize) -> f32 {
    const L: usize = SOFTMAX_LANES;
    let (full, tail) = (len / L, len % L);
    let mut lanes = [f32::NEG_INFINITY; L];
    for c in row[..full * L].chunks_exact(L) {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = larger(*v, *m);
        }
    }
    if tail > 0 {
        let c = &row[full * L..(full + 1) * L];
        for (i, (m, v)) in lanes.iter_mut().zip(c).enumerate() {
            *m = if i < tail { larger(*v, *m) } else { *m };
        }
    }
    let max = lanes.iter().fold(f32::NEG_INFINITY, |m, v| larger(*v, m));
    let mut sums = [0f32; L];
    for c in row[..full * L].chunks_exact_mut(L) {
        for (s, v) in sums.iter_mut().zip(c) {
            *v = exp::<M>(*v - max);
            *s += *v;
        }
    }
    let mut padding = full * L;
    if tail > 0 {
        let c = &mut row[full * L..(full + 1) * L];
        for (i, (s, v)) in sums.iter_mut().zip(c).enumerate() {
            let e = exp::<M>(*v - max);
            *v = if i < tail { e } else { 0.0 };
            *s += *v;
        }
        padding += L;
    }
    row[padding..].fill(0.0);
    sums.iter().sum::<f32>()
}

/// Softmax of each row's first `len` values but for the division, rows
/// `stride` apart (`stride` a multiple of [`SOFTMAX_LANES`], at least
/// `len`): the row's e^(v − max) in place (zeros in its padding), and 1 /
/// their sum into `inv_sums` (a value a row). Attention divides the product
/// of these rows with the values instead (`len × d` multiplications where
/// the rows have `len × len`).
#[inline(always)]
fn softmax_numerators_generic<M: MulAdd>(
    x: &mut [f32],
    len: usize,
    stride: usize,
    inv_sums: &mut [f32],
) {
    assert!(
        stride >= len && stride.is_multiple_of(SOFTMAX_LANES),
        "rows of {len} values {stride} apart"
    );
    for (row, inv) in x.chunks_exact_mut(stride).zip(inv_sums) {
        *inv = 1.0 / exp_row_padded::<M>(row, len);
    }
}

dispatch!(softmax_numerators, softmax_numerators_at(x: &mut [f32], len: usize, stride: usize, inv_sums: &mut [f32]) => softmax_numerators_generic::<Fused>, softmax_numerators_generic::<Baseline>);

#[inline(always)]
fn sum_lanes(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (s, v) in lanes.iter_mut().zip(c) {
            *s += f(*v);
        }
    }
    chunks.remainder().iter().map(|v| f(*v)).sum::<f32>() + lanes.iter().sum::<f32>()
}

/// Layer norm of each row of `weight.len()` values, in place, two-pass like
/// PyTorch: mean, then the biased variance of the centred values.
#[inline(always)]
fn layer_norm_generic(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let width = weight.len();
    for row in x.chunks_exact_mut(width) {
        let mean = sum_lanes(row, |v| v) / width as f32;
        let var = sum_lanes(row, |v| (v - mean) * (v - mean)) / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

dispatch!(layer_norm, layer_norm_at(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) => layer_norm_generic);

#[inline(always)]
fn add_row_generic(x: &mut [f32], row: &[f32]) {
    for chunk in x.chunks_exact_mut(row.len()) {
        for (v, b) in chunk.iter_mut().zip(row) {
            *v += b;
        }
    }
}

dispatch!(add_row, add_row_at(x: &mut [f32], row: &[f32]) => add_row_generic);

/// `round(v)`, halves away from zero, for `|v|` within `i32`: an add and a
/// truncating convert, which vectorise (`f32::round` is a libm call on the
/// baseline x86-64 target).
#[inline(always)]
pub(crate) fn round_to_i32(v: f32) -> i32 {
    (v + 0.5f32.copysign(v)) as i32
}

/// Quantises one row of activations to unsigned bytes in blocks of
/// `block` values, each with its own scale (its largest magnitude over
/// 127): `q = round(x / s) + 128`, written to `values` (as long as `x`
/// rounded up to whole blocks; the padding gets the zero point), `s` to
/// `scales` (one per block).
#[inline(always)]
fn quantize_row_generic(x: &[f32], values: &mut [u8], scales: &mut [f32], block: usize) {
    for ((x, q), s) in x
        .chunks(block)
        .zip(values.chunks_mut(block))
        .zip(scales.iter_mut())
    {
        *s = match (
            <&[f32; 32]>::try_from(x),
            <&mut [u8; 32]>::try_from(&mut *q),
        ) {
            (Ok(x), Ok(q)) => quantize_block_32(x, q),
            _ => quantize_block(x, q),
        };
    }
}

/// One block of any length (`q` may be longer: the rest gets the zero
/// point); returns its scale.
#[inline(always)]
fn quantize_block(x: &[f32], q: &mut [u8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (q, v) in q.iter_mut().zip(x) {
        *q = to_u8(v * inv);
    }
    q[x.len()..].fill(128);
    scale
}

/// `round(t)` clamped to ±127 (NaN as 0), plus the zero point 128. The
/// clamp runs in `f32` with plain comparisons and the conversion cannot
/// overflow, so the loops around it vectorise (a saturating `as i32` kept
/// them scalar: 13% of an int8 run was this conversion).
#[inline(always)]
fn to_u8(t: f32) -> u8 {
    #[allow(clippy::eq_op)] // NaN is the only value unequal to itself
    let t = if t == t { t } else { 0.0 };
    let t = if t > 127.0 { 127.0 } else { t };
    let t = if t < -127.0 { -127.0 } else { t };
    // SAFETY: t is finite and within ±127.5 after the lines above.
    let r: i32 = unsafe { (t + 0.5f32.copysign(t)).to_int_unchecked() };
    (r + 128) as u8
}

/// [`quantize_block`] for a whole block of 32, written with fixed lengths
/// and plain comparisons (no NaN-aware `max`) so that it compiles to a few
/// vector instructions; the same result for every non-NaN input.
#[inline(always)]
fn quantize_block_32(x: &[f32; 32], q: &mut [u8; 32]) -> f32 {
    let mut lanes = [0f32; LANES];
    for c in x.chunks_exact(LANES) {
        for (m, v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    let max = lanes.iter().fold(0f32, |m, &a| if a > m { a } else { m });
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (q, v) in q.iter_mut().zip(x) {
        *q = to_u8(v * inv);
    }
    scale
}

dispatch!(quantize_row, quantize_row_at(x: &[f32], values: &mut [u8], scales: &mut [f32], block: usize) => quantize_row_generic);

#[cfg(test)]
mod tests {
    use super::*;

    fn libm_gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2))
    }

    /// erf from its Maclaurin series (|x| < 3) and continued fraction
    /// (|x| >= 3), in f64: a slow reference independent of the kernel.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let y = if a < 3.0 {
            let mut term = a;
            let mut sum = a;
            let mut n = 0.0;
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
        };
        y.copysign(x)
    }

    fn grid(from: f32, to: f32, n: usize) -> Vec<f32> {
        (0..=n)
            .map(|i| from + (to - from) * i as f32 / n as f32)
            .collect()
    }

    #[test]
    fn exp_is_within_3_ulp_of_std() {
        for x in grid(-87.0, 88.0, 200_000) {
            let (got, want) = (exp::<Separate>(x), x.exp());
            let fused = exp::<Fused>(x);
            let ulp_fused = (want.to_bits() as i64 - fused.to_bits() as i64).abs();
            assert!(ulp_fused <= 3, "fused exp({x}) = {fused}, std says {want}");
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 3, "exp({x}) = {got}, std says {want} ({ulp} ulp)");
        }
    }

    #[test]
    fn exp_of_very_negative_inputs_is_practically_zero_and_finite() {
        for x in [-88.0f32, -1e4, -1e30, f32::MIN] {
            for y in [exp::<Separate>(x), exp::<Fused>(x)] {
                assert!((0.0..1e-37).contains(&y), "exp({x}) = {y}");
            }
        }
    }

    #[test]
    fn gelu_matches_the_exact_erf_gelu() {
        let mut x = grid(-12.0, 12.0, 100_000);
        let want: Vec<f64> = x.iter().map(|v| libm_gelu(*v as f64)).collect();
        gelu(&mut x);
        for (got, want) in x.iter().zip(&want) {
            assert!(
                (*got as f64 - want).abs() < 2e-6 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn gelu_tanh_matches_its_definition() {
        let mut x = grid(-12.0, 12.0, 10_000);
        let want: Vec<f64> = x
            .iter()
            .map(|v| {
                let v = *v as f64;
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * v * (1.0 + (c * (v + 0.044715 * v.powi(3))).tanh())
            })
            .collect();
        gelu_tanh(&mut x);
        for (got, want) in x.iter().zip(&want) {
            assert!(
                (*got as f64 - want).abs() < 2e-6 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn relu_clamps_negatives() {
        let mut x = vec![-1.0f32, 0.0, 2.5];
        relu(&mut x);
        assert_eq!(x, vec![0.0, 0.0, 2.5]);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_the_definition() {
        let width = 13;
        let mut x: Vec<f32> = (0..width * 3)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7)
            .collect();
        let orig = x.clone();
        softmax_rows(&mut x, width);
        // The numerators and 1/sums, multiplied back, are the same softmax.
        // Rows padded to 16 values with stale ones (NaN and a large value
        // that would win the max) the numerators must ignore and zero.
        let stride = 16;
        let mut numerators: Vec<f32> = orig
            .chunks(width)
            .flat_map(|r| r.iter().copied().chain([f32::NAN, 1e30, -1.0]))
            .collect();
        let mut inv = vec![f32::NAN; 3];
        softmax_numerators(&mut numerators, width, stride, &mut inv);
        for ((row, orig), (top, inv)) in x
            .chunks(width)
            .zip(orig.chunks(width))
            .zip(numerators.chunks(stride).zip(&inv))
        {
            assert_eq!(top[width..], [0.0; 3], "padding");
            let max = orig.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let denom: f64 = orig.iter().map(|v| (*v as f64 - max).exp()).sum();
            assert!(
                (*inv as f64 * denom - 1.0).abs() < 1e-6,
                "{inv} vs 1/{denom}"
            );
            for ((got, o), top) in row.iter().zip(orig).zip(top) {
                let want = (*o as f64 - max).exp() / denom;
                assert!((*got as f64 - want).abs() < 1e-7, "{got} vs {want}");
                // e^(o − max) of the f32 difference, as the kernel takes it.
                let e = ((*o - max as f32) as f64).exp();
                assert!((*top as f64 / e - 1.0).abs() < 4e-7, "{top} vs {e}");
            }
        }
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let width = 10;
        let mut x: Vec<f32> = (0..width * 2).map(|i| (i * i) as f32 * 0.1).collect();
        let weight: Vec<f32> = (0..width).map(|i| 1.0 + i as f32 * 0.1).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 * -0.05).collect();
        let orig = x.clone();
        layer_norm(&mut x, &weight, &bias, 1e-12);
        for (row, orig) in x.chunks(width).zip(orig.chunks(width)) {
            let mean = orig.iter().map(|v| *v as f64).sum::<f64>() / width as f64;
            let var = orig.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / width as f64;
            for i in 0..width {
                let want = (orig[i] as f64 - mean) / (var + 1e-12).sqrt() * weight[i] as f64
                    + bias[i] as f64;
                assert!((row[i] as f64 - want).abs() < 1e-5, "{} vs {want}", row[i]);
            }
        }
    }

    /// Every level this CPU runs, the baseline first.
    fn levels() -> Vec<Level> {
        let all = [
            Level::Baseline,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512,
        ];
        let levels: Vec<Level> = all
            .into_iter()
            .filter(|l| *l <= Level::detected())
            .collect();
        // Every x86-64 machine this project runs on has AVX2: a detection
        // that lost it would test the baseline copies alone, silently.
        #[cfg(target_arch = "x86_64")]
        assert!(levels.contains(&Level::Avx2), "AVX2 not detected");
        levels
    }

    /// Every copy of a step this CPU runs (AVX-512, AVX2+FMA, baseline)
    /// must give the generic code's results (to a few ulp: the compiler may
    /// order vector reductions differently, and the wide copies fuse
    /// multiply-adds).
    #[test]
    fn every_compiled_copy_agrees_with_the_generic_code() {
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let tol = 4.0 * f32::EPSILON * x.abs().max(y.abs()).max(1.0);
                assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
            }
        };
        for level in levels() {
            // An odd length, so the lanes' remainders are exercised.
            let x = grid(-20.0, 20.0, 10_006);
            type Kernel = fn(Level, &mut [f32]);
            type Generic = fn(&mut [f32]);
            let unary: [(&str, Kernel, Generic); 3] = [
                ("gelu", gelu_at, gelu_generic::<Separate>),
                ("gelu_tanh", gelu_tanh_at, gelu_tanh_generic::<Separate>),
                ("relu", relu_at, relu_generic),
            ];
            for (name, compiled, generic) in unary {
                let (mut a, mut b) = (x.clone(), x.clone());
                compiled(level, &mut a);
                generic(&mut b);
                close(&a, &b, &format!("{level:?} {name}"));
            }
            let width = 37;
            let rows: Vec<f32> = grid(-9.0, 9.0, 37 * 11 - 1);
            let (mut a, mut b) = (rows.clone(), rows.clone());
            softmax_rows_at(level, &mut a, width);
            softmax_rows_generic::<Separate>(&mut b, width);
            close(&a, &b, &format!("{level:?} softmax_rows"));
            // Rows of 37 in strides of 48: whole groups, a partial one and
            // padding; of 32 (whole groups only) in strides of 32 and 64
            // (a whole group of padding); of 5 (a partial group alone).
            for (len, stride) in [(37, 48), (32, 32), (32, 64), (5, 16)] {
                let rows = grid(-9.0, 9.0, stride * 11);
                let (mut a, mut b) = (rows.clone(), rows);
                let (mut ia, mut ib) = (vec![0f32; 11], vec![0f32; 11]);
                softmax_numerators_at(level, &mut a, len, stride, &mut ia);
                softmax_numerators_generic::<Separate>(&mut b, len, stride, &mut ib);
                close(&a, &b, &format!("{level:?} softmax_numerators"));
                close(&ia, &ib, &format!("{level:?} softmax_numerators' sums"));
            }

            let width = 387;
            let rows: Vec<f32> = (0..width * 5)
                .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.01)
                .collect();
            let weight: Vec<f32> = (0..width).map(|i| 1.0 + (i % 13) as f32 * 0.05).collect();
            let bias: Vec<f32> = (0..width).map(|i| (i % 7) as f32 * -0.02).collect();
            let (mut a, mut b) = (rows.clone(), rows.clone());
            layer_norm_at(level, &mut a, &weight, &bias, 1e-12);
            layer_norm_generic(&mut b, &weight, &bias, 1e-12);
            close(&a, &b, &format!("{level:?} layer_norm"));
            let (mut a, mut b) = (rows.clone(), rows);
            add_row_at(level, &mut a, &bias);
            add_row_generic(&mut b, &bias);
            close(&a, &b, &format!("{level:?} add_row"));

            // 101 values in blocks of 64: one whole block, one partial.
            let x: Vec<f32> = grid(-3.0, 5.0, 100);
            let (mut qa, mut qb) = (vec![0u8; 128], vec![0u8; 128]);
            let (mut sa, mut sb) = (vec![0f32; 2], vec![0f32; 2]);
            quantize_row_at(level, &x, &mut qa, &mut sa, 64);
            quantize_row_generic(&x, &mut qb, &mut sb, 64);
            assert_eq!((qa, sa), (qb, sb), "{level:?} quantize_row");
        }
    }

    #[test]
    fn whole_blocks_of_32_quantise_as_any_block_does() {
        let x: Vec<f32> = grid(-7.0, 3.0, 95)
            .into_iter()
            .map(|v| v * v.sin())
            .collect();
        for block in x.chunks_exact(32) {
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            let fast = quantize_block_32(block.try_into().unwrap(), &mut a);
            let any = quantize_block(block, &mut b);
            assert_eq!((fast, a), (any, b));
        }
        let zeros = [0f32; 32];
        let mut q = [0u8; 32];
        assert_eq!(quantize_block_32(&zeros, &mut q), 1.0);
        assert!(q.iter().all(|q| *q == 128));
        // Out of range, infinite and NaN values clamp (NaN to the zero
        // point), halves round away from zero.
        let cases = [
            (200.0, 255),
            (f32::INFINITY, 255),
            (-127.6, 1),
            (f32::NEG_INFINITY, 1),
            (f32::NAN, 128),
            (2.5, 131),
            (-2.5, 125),
            (0.49, 128),
        ];
        for (t, want) in cases {
            assert_eq!(to_u8(t), want, "{t}");
        }
    }

    #[test]
    fn a_quantised_row_is_within_half_a_step_per_block() {
        let mut x: Vec<f32> = grid(-1.0, 1.0, 149); // 150 values
        x[70] = 40.0; // an outlier coarsens its own block only
        let mut q = vec![0u8; 192];
        let mut s = vec![0f32; 3];
        quantize_row(&x, &mut q, &mut s, 64);
        assert_eq!(s[1], 40.0 / 127.0);
        assert!(s[0] <= 1.0 / 127.0 && s[2] <= 1.0 / 127.0, "{s:?}");
        for (i, v) in x.iter().enumerate() {
            let back = (q[i] as i32 - 128) as f32 * s[i / 64];
            assert!(
                (back - v).abs() <= s[i / 64] * 0.5 + 1e-6,
                "{i}: {v} vs {back}"
            );
        }
        assert!(
            q[150..].iter().all(|q| *q == 128),
            "padding is the zero point"
        );
        assert_eq!(q[70], 255);
        assert_eq!(round_to_i32(-2.5), -3);
        assert_eq!(round_to_i32(2.49), 2);
    }

    #[test]
    fn add_row_adds_to_every_row() {
        let mut x = vec![1f32; 6];
        add_row(&mut x, &[1.0, 2.0, 3.0]);
        assert_eq!(x, vec![2., 3., 4., 2., 3., 4.]);
    }
}
