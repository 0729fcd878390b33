//! Dense layers: `y = x·Wᵀ + b` on row-major `f32` buffers through the
//! `gemm` crate (the same kernels candle's CPU matmul uses, without the
//! per-op tensor allocations around them).

use gemm::Parallelism;

use super::int8::Int8Weights;

/// A dense layer with PyTorch's layout: `weight` is `out × in`, row-major.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Vec<f32>,
    /// When set, the weights are held in int8 and `weight` is empty.
    int8: Option<Int8Weights>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    pub(crate) fn new(weight: Vec<f32>, bias: Vec<f32>, inputs: usize) -> Self {
        let outputs = bias.len();
        assert_eq!(weight.len(), inputs * outputs, "weight is not out × in");
        Linear {
            weight,
            int8: None,
            bias,
            inputs,
            outputs,
        }
    }

    /// Layers over the same input stacked into one: their outputs side by
    /// side, so that one product replaces several.
    pub(crate) fn stack(parts: &[Linear]) -> Self {
        let inputs = parts.first().map_or(0, |p| p.inputs);
        assert!(parts.iter().all(|p| p.inputs == inputs), "inputs differ");
        Linear::new(
            parts
                .iter()
                .flat_map(|p| p.weight.iter().copied())
                .collect(),
            parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
            inputs,
        )
    }

    /// The same layer with int8 weights (the `f32` copy is dropped).
    pub(crate) fn quantized(self) -> Self {
        Linear {
            int8: Some(Int8Weights::quantize(&self.weight, self.inputs)),
            weight: Vec::new(),
            ..self
        }
    }

    /// Bytes of weights held.
    pub(crate) fn weight_bytes(&self) -> usize {
        self.int8
            .as_ref()
            .map_or(4 * self.weight.len(), Int8Weights::bytes)
    }

    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }

    /// `out = x·Wᵀ + b` for `rows` rows. `scratch` holds int8 weights
    /// expanded for the product (kept by the caller across layers).
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
        let rows = x.len() / self.inputs;
        for row in out.chunks_exact_mut(self.outputs) {
            row.copy_from_slice(&self.bias);
        }
        self.accumulate(x, rows, out, scratch);
    }

    /// `out += x·Wᵀ + b`: the residual already sits in `out`.
    pub(crate) fn forward_add(&self, x: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
        let rows = x.len() / self.inputs;
        super::kernels::add_row(out, &self.bias);
        self.accumulate(x, rows, out, scratch);
    }

    fn accumulate(&self, x: &[f32], rows: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        let weight: &[f32] = match &self.int8 {
            None => &self.weight,
            Some(int8) => {
                scratch.resize(int8.len(), 0.0);
                int8.expand(scratch);
                scratch
            }
        };
        assert_eq!(weight.len(), self.inputs * self.outputs);
        assert_eq!(x.len(), rows * self.inputs, "input is not rows × in");
        assert_eq!(out.len(), rows * self.outputs, "output is not rows × out");
        // SAFETY: the asserts above give every matrix the extent the strides
        // describe: x is rows × in (row stride in), Wᵀ is read from the
        // out × in weight (element (k, j) at j·in + k), out is rows × out.
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

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919 % 997) as f32 / 997.0) - 0.5)
            .collect()
    }

    #[test]
    fn forward_matches_a_naive_product() {
        let (rows, inputs, outputs) = (37, 70, 45);
        let (x, w, b) = (
            values(rows * inputs, 1),
            values(outputs * inputs, 2),
            values(outputs, 3),
        );
        let layer = Linear::new(w.clone(), b.clone(), inputs);
        let mut out = vec![f32::NAN; rows * outputs];
        layer.forward(&x, &mut out, &mut Vec::new());
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
        let layer = Linear::new(w.clone(), b.clone(), inputs);
        let f32_bytes = layer.weight_bytes();
        let q = layer.quantized();
        assert!(q.weight_bytes() * 3 < f32_bytes, "{}", q.weight_bytes());
        let mut out = vec![0f32; rows * outputs];
        q.forward(&x, &mut out, &mut Vec::new());
        for (got, want) in out.iter().zip(naive(&x, &w, &b, inputs)) {
            assert!((got - want).abs() < 0.01, "{got} vs {want}");
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
        let layer = Linear::new(w.clone(), b.clone(), inputs);
        let residual = values(rows * outputs, 7);
        let mut out = residual.clone();
        layer.forward_add(&x, &mut out, &mut Vec::new());
        let plain = naive(&x, &w, &b, inputs);
        for i in 0..out.len() {
            assert!((out[i] - residual[i] - plain[i]).abs() < 1e-5);
        }
    }
}
