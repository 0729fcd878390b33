//! Dense layers: `y = x·Wᵀ + b` on row-major `f32` buffers. `f32` weights
//! run membatch's own packed kernel ([`super::dense`]); int8 weights are
//! expanded and run through the `gemm` crate, which also serves attention's
//! per-head products (strided views, no packing).

use gemm::Parallelism;

use super::dense::PackedWeights;
use super::dense_i8::{Int8Kernel, Int8Panels, Quantized};
use super::int8::Int8Weights;

/// A dense layer with PyTorch's layout: `weight` is `out × in`, row-major.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weights: Weights,
    inputs: usize,
    outputs: usize,
}

#[derive(Debug, Clone)]
enum Weights {
    /// Packed once for membatch's own kernel (bias included).
    F32(PackedWeights),
    /// Int8, expanded to `f32` for `gemm` before each product (CPUs
    /// without VNNI).
    Int8 {
        weights: Int8Weights,
        bias: Vec<f32>,
    },
    /// Int8 per output column, multiplied with 8-bit activations by a VNNI
    /// kernel.
    Vnni(Int8Panels, Int8Kernel),
}

/// Buffers a batch's products reuse: int8 weights expanded to `f32`, or
/// activations quantised to 8 bits.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    expanded: Vec<f32>,
    quantized: Quantized,
}

impl Linear {
    /// An `f32` layer, packed for the dense kernel now.
    pub(crate) fn new(weight: &[f32], bias: Vec<f32>, inputs: usize) -> Self {
        let outputs = bias.len();
        assert_eq!(weight.len(), inputs * outputs, "weight is not out × in");
        Linear {
            weights: Weights::F32(PackedWeights::new(weight, &bias, inputs)),
            inputs,
            outputs,
        }
    }

    /// An int8 layer (the `f32` weights are not kept): on a CPU with VNNI,
    /// integer products on weights quantised per output column; elsewhere
    /// weights quantised per block of 32 and expanded for an `f32` product.
    pub(crate) fn new_int8(weight: &[f32], bias: Vec<f32>, inputs: usize) -> Self {
        match Int8Kernel::vnni() {
            Some(kernel) => Self::new_vnni(weight, bias, inputs, kernel),
            None => Self::new_expanded(weight, bias, inputs),
        }
    }

    /// An int8 layer expanded to `f32` for each product.
    pub(crate) fn new_expanded(weight: &[f32], bias: Vec<f32>, inputs: usize) -> Self {
        let outputs = bias.len();
        assert_eq!(weight.len(), inputs * outputs, "weight is not out × in");
        Linear {
            weights: Weights::Int8 {
                weights: Int8Weights::quantize(weight, inputs),
                bias,
            },
            inputs,
            outputs,
        }
    }

    /// An int8 layer run by the integer `kernel`.
    pub(crate) fn new_vnni(
        weight: &[f32],
        bias: Vec<f32>,
        inputs: usize,
        kernel: Int8Kernel,
    ) -> Self {
        let outputs = bias.len();
        assert_eq!(weight.len(), inputs * outputs, "weight is not out × in");
        Linear {
            weights: Weights::Vnni(Int8Panels::new(weight, &bias, inputs), kernel),
            inputs,
            outputs,
        }
    }

    /// Bytes of weights held (bias included).
    pub(crate) fn weight_bytes(&self) -> usize {
        match &self.weights {
            Weights::F32(packed) => packed.bytes(),
            Weights::Int8 { weights, bias } => weights.bytes() + 4 * bias.len(),
            Weights::Vnni(panels, _) => panels.bytes(),
        }
    }

    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }

    /// `out = x·Wᵀ + b` for every row of `x`. `scratch` is kept by the
    /// caller across layers.
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32], scratch: &mut Scratch) {
        self.product(x, out, false, scratch)
    }

    /// `out += x·Wᵀ + b`: the residual already sits in `out`.
    pub(crate) fn forward_add(&self, x: &[f32], out: &mut [f32], scratch: &mut Scratch) {
        self.product(x, out, true, scratch)
    }

    fn product(&self, x: &[f32], out: &mut [f32], accumulate: bool, scratch: &mut Scratch) {
        assert_eq!(x.len() % self.inputs, 0, "input is not rows × in");
        let rows = x.len() / self.inputs;
        assert_eq!(out.len(), rows * self.outputs, "output is not rows × out");
        match &self.weights {
            Weights::F32(packed) => packed.forward(x, out, accumulate),
            Weights::Vnni(panels, kernel) => {
                panels.forward(x, out, accumulate, &mut scratch.quantized, *kernel)
            }
            Weights::Int8 { weights, bias } => {
                if accumulate {
                    super::kernels::add_row(out, bias);
                } else {
                    for row in out.chunks_exact_mut(self.outputs) {
                        row.copy_from_slice(bias);
                    }
                }
                let expanded = &mut scratch.expanded;
                expanded.resize(weights.len(), 0.0);
                weights.expand(expanded);
                let weight: &[f32] = expanded;
                // SAFETY: the asserts above give every matrix the extent the
                // strides describe: x is rows × in (row stride in), Wᵀ is
                // read from the out × in weight (element (k, j) at j·in + k),
                // out is rows × out.
                unsafe {
                    matmul(
                        Mat::new(x.as_ptr(), self.inputs as isize, 1),
                        Mat::new(weight.as_ptr(), 1, self.inputs as isize),
                        MatMut::new(out.as_mut_ptr(), self.outputs as isize),
                        (rows, self.outputs, self.inputs),
                        1.0,
                        true,
                        parallelism(),
                    )
                }
            }
        }
    }
}

/// The rayon pool this call runs in, for gemm's own splitting (it keeps
/// small products on one thread by itself).
pub(crate) fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// A read-only strided matrix view.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl Mat {
    pub(crate) fn new(ptr: *const f32, row_stride: isize, col_stride: isize) -> Self {
        Mat {
            ptr,
            row_stride,
            col_stride,
        }
    }
}

/// A writable row-major matrix view (column stride 1).
#[derive(Clone, Copy)]
pub(crate) struct MatMut {
    ptr: *mut f32,
    row_stride: isize,
}

impl MatMut {
    pub(crate) fn new(ptr: *mut f32, row_stride: isize) -> Self {
        MatMut { ptr, row_stride }
    }
}

/// `dst = [dst +] scale · lhs·rhs` for an `m × k` lhs and a `k × n` rhs.
///
/// # Safety
///
/// Every view must be valid for the `m × k`, `k × n` and `m × n` extents
/// its strides describe, and `dst` must not overlap the inputs or be written
/// by anyone else during the call.
pub(crate) unsafe fn matmul(
    lhs: Mat,
    rhs: Mat,
    dst: MatMut,
    (m, n, k): (usize, usize, usize),
    scale: f32,
    accumulate: bool,
    parallelism: Parallelism,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.row_stride,
            accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], b: &[f32], inputs: usize) -> Vec<f32> {
        let outputs = b.len();
        x.chunks(inputs)
            .flat_map(|row| {
                (0..outputs).map(move |j| {
                    b[j] + (0..inputs).map(|k| row[k] * w[j * inputs + k]).sum::<f32>()
                })
            })
            .collect()
    }

    use crate::test_util::ramp as values;

    #[test]
    fn forward_matches_a_naive_product() {
        let (rows, inputs, outputs) = (37, 70, 45);
        let (x, w, b) = (
            values(rows * inputs, 1),
            values(outputs * inputs, 2),
            values(outputs, 3),
        );
        let layer = Linear::new(&w, b.clone(), inputs);
        let mut out = vec![f32::NAN; rows * outputs];
        layer.forward(&x, &mut out, &mut Scratch::default());
        for (got, want) in out.iter().zip(naive(&x, &w, &b, inputs)) {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn a_quantized_layer_stays_close_and_holds_a_quarter_of_the_bytes() {
        let (rows, inputs, outputs) = (9, 64, 20);
        let (x, w, b) = (
            values(rows * inputs, 8),
            values(outputs * inputs, 9),
            values(outputs, 10),
        );
        let f32_bytes = Linear::new(&w, b.clone(), inputs).weight_bytes();
        // Weights alone in int8 (expanded), and weights and activations
        // (the integer kernels; the generic one runs anywhere).
        let mut layers = vec![
            (Linear::new_expanded(&w, b.clone(), inputs), 0.01),
            (
                Linear::new_vnni(&w, b.clone(), inputs, Int8Kernel::Generic),
                0.03,
            ),
        ];
        if let Some(kernel) = Int8Kernel::vnni() {
            layers.push((Linear::new_vnni(&w, b.clone(), inputs, kernel), 0.03));
        }
        for (q, tolerance) in layers {
            assert!(q.weight_bytes() * 3 < f32_bytes, "{}", q.weight_bytes());
            let mut out = vec![0f32; rows * outputs];
            q.forward(&x, &mut out, &mut Scratch::default());
            for (got, want) in out.iter().zip(naive(&x, &w, &b, inputs)) {
                assert!((got - want).abs() < tolerance, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn forward_add_keeps_the_residual() {
        let (rows, inputs, outputs) = (5, 8, 3);
        let (x, w, b) = (
            values(rows * inputs, 4),
            values(outputs * inputs, 5),
            values(outputs, 6),
        );
        let residual = values(rows * outputs, 7);
        let plain = naive(&x, &w, &b, inputs);
        for (layer, tolerance) in [
            (Linear::new(&w, b.clone(), inputs), 1e-5),
            (Linear::new_expanded(&w, b.clone(), inputs), 0.01),
            (
                Linear::new_vnni(&w, b.clone(), inputs, Int8Kernel::Generic),
                0.03,
            ),
        ] {
            let mut out = residual.clone();
            layer.forward_add(&x, &mut out, &mut Scratch::default());
            for i in 0..out.len() {
                assert!((out[i] - residual[i] - plain[i]).abs() < tolerance);
            }
        }
    }
}
