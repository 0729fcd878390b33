//! Pooling token states into one sentence vector, honouring the attention mask.

use candle_core::{DType, IndexOp, Result, Tensor, D};

/// How token states become one sentence vector, as a sentence-transformers
/// `Pooling` module configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pooling {
    /// Mean over the real tokens (the mask), `[CLS]` and `[SEP]` included.
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

impl Pooling {
    /// Pools `hidden` `(batch, seq, dim)` with `mask` `(batch, seq)` of 0/1
    /// (f32) into `(batch, dim)`. Padding never contributes.
    pub(crate) fn apply(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match self {
            Pooling::Cls => hidden.i((.., 0))?.contiguous(),
            Pooling::Mean => {
                let mask = mask.unsqueeze(D::Minus1)?; // (b, s, 1)
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                // sentence-transformers divides by max(count, 1e-9).
                let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)
            }
            Pooling::Max => {
                // Padding is pushed far below any real activation first, as
                // sentence-transformers does (-1e9), so it never wins.
                let mask = mask.unsqueeze(D::Minus1)?;
                let penalty = ((mask.ones_like()? - &mask)? * -1e9)?;
                hidden.broadcast_add(&penalty)?.max(1)
            }
        }
    }
}

/// Divides each row by its L2 norm, floored at 1e-12 like torch's `normalize`.
pub(crate) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .to_dtype(DType::F32)?
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two sequences of length 3, dim 2; the second has one padding token
    /// whose state is huge, so any leak of padding shows.
    fn inputs() -> (Tensor, Tensor) {
        let hidden = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [5., -6.]],
                [[1., -1.], [3., 5.], [1000., 1000.]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &Device::Cpu).unwrap();
        (hidden, mask)
    }

    fn pooled(p: Pooling) -> Vec<Vec<f32>> {
        let (h, m) = inputs();
        p.apply(&h, &m).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn mean_ignores_padding() {
        assert_eq!(pooled(Pooling::Mean), vec![vec![3., 0.], vec![2., 2.]]);
    }

    #[test]
    fn max_ignores_padding() {
        assert_eq!(pooled(Pooling::Max), vec![vec![5., 4.], vec![3., 5.]]);
    }

    #[test]
    fn cls_takes_the_first_token() {
        assert_eq!(pooled(Pooling::Cls), vec![vec![1., 2.], vec![1., -1.]]);
    }

    #[test]
    fn mean_of_an_all_padding_row_is_zero_not_nan() {
        let h = Tensor::ones((1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let m = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap();
        let out: Vec<Vec<f32>> = Pooling::Mean.apply(&h, &m).unwrap().to_vec2().unwrap();
        assert_eq!(out, vec![vec![0., 0.]]);
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows_finite() {
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        let out: Vec<Vec<f32>> = l2_normalize(&x).unwrap().to_vec2().unwrap();
        assert_eq!(out, vec![vec![0.6, 0.8], vec![0., 0.]]);
    }
}
