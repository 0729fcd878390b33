//! The forward pass's kernels and their baselines for membatch's own
//! criterion benches (`benches/benchmarks/gemm.rs`); compiled with the
//! `bench-internals` feature only. Not part of the API.

use super::encoder::dense::PackedWeights;

/// An `outputs × inputs` weight with its bias, packed once.
#[derive(Debug)]
pub struct Dense(PackedWeights);

impl Dense {
    /// Packs `weight` (`outputs × inputs`, row-major) and `bias`.
    pub fn new(weight: &[f32], bias: &[f32], inputs: usize) -> Self {
        Dense(PackedWeights::new(weight, bias, inputs))
    }

    /// `out = x·Wᵀ + b` with membatch's packed kernel (the fastest
    /// this CPU runs).
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        self.0.forward(x, out, false)
    }

    /// The kernels this CPU runs other than the fastest, by name
    /// (`"generic"`, `"avx2"`): the benches' comparison rows.
    pub fn slower_kernels() -> Vec<&'static str> {
        let fastest = super::encoder::dense::kernel_for_this_cpu();
        super::encoder::dense::Kernel::available()
            .into_iter()
            .filter(|k| *k != fastest)
            .map(kernel_name)
            .collect()
    }

    /// [`Dense::forward`] on the kernel named `kernel` (one of
    /// [`Dense::slower_kernels`] or the fastest's name); `false`, with
    /// `out` untouched, for a name this CPU does not run.
    pub fn forward_on(&self, kernel: &str, x: &[f32], out: &mut [f32]) -> bool {
        let found = super::encoder::dense::Kernel::available()
            .into_iter()
            .find(|k| kernel_name(*k) == kernel);
        match found {
            Some(k) => {
                self.0.forward_with(x, out, false, k);
                true
            }
            None => false,
        }
    }
}

fn kernel_name(kernel: super::encoder::dense::Kernel) -> &'static str {
    use super::encoder::dense::Kernel;
    match kernel {
        Kernel::Generic => "generic",
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => "avx2",
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => "avx512",
    }
}

/// The same product with int8 weights (per output column) and 8-bit
/// activations (per row) on a VNNI kernel.
#[derive(Debug)]
pub struct DenseInt8(
    super::encoder::dense_i8::Int8Panels,
    super::encoder::dense_i8::Int8Kernel,
);

impl DenseInt8 {
    /// Quantises and packs `weight` and `bias`; `None` where the CPU
    /// has no VNNI.
    pub fn new(weight: &[f32], bias: &[f32], inputs: usize) -> Option<Self> {
        let kernel = super::encoder::dense_i8::Int8Kernel::vnni()?;
        Some(DenseInt8(
            super::encoder::dense_i8::Int8Panels::new(weight, bias, inputs),
            kernel,
        ))
    }

    /// `out = x·Wᵀ + b`, `x` quantised per row as it starts.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        let mut scratch = Default::default();
        self.0.forward(x, out, false, &mut scratch, self.1)
    }
}

/// Self-attention of packed sequences (`lengths` one after another):
/// `qkv` is `tokens × 3h`, `context` receives `tokens × h`. With
/// `gemm_crate`, the products run through the `gemm` crate as they did
/// before membatch's own kernel ran them (the baseline).
pub fn attention(
    qkv: &[f32],
    context: &mut [f32],
    lengths: &[usize],
    heads: usize,
    h: usize,
    gemm_crate: bool,
) {
    use super::encoder::attention::{attend, Products};
    let mut start = 0;
    let spans: Vec<(usize, usize)> = lengths
        .iter()
        .map(|&len| {
            start += len;
            (start - len, len)
        })
        .collect();
    let products = if gemm_crate {
        Products::GemmCrate
    } else {
        Products::fastest()
    };
    attend(qkv, context, &spans, heads, h, None, products)
}

/// `out = x·Wᵀ + b` through the `gemm` crate on the unpacked weight,
/// as the forward pass ran before its own kernel (the baseline).
pub fn gemm_crate(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    super::encoder::gemm_crate_product(x, weight, bias, out)
}
