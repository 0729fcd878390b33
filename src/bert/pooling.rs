//! Pooling token states into one sentence vector.

/// How token states become one sentence vector, as a sentence-transformers
/// `Pooling` module configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pooling {
    /// Mean over the text's tokens, `[CLS]` and `[SEP]` included (a
    /// prompt's tokens too, unless the pooling config says
    /// `include_prompt: false`).
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over the text's tokens.
    Max,
    /// The state of the last token (the end token for BERT-style
    /// tokenizers), as decoder-based embedders pool.
    LastToken,
}

impl Pooling {
    /// Pools the `rows` (row-major, `width` values each) of one text into
    /// one vector. Sequences are packed without padding, so every row is a
    /// real token; no rows give a zero vector, as sentence-transformers'
    /// `max(count, 1e-9)` divisor does.
    pub(crate) fn apply(self, rows: &[f32], width: usize) -> Vec<f32> {
        let mut out = vec![0f32; width];
        let mut tokens = rows.chunks_exact(width);
        match self {
            Pooling::Cls => {
                if let Some(first) = tokens.next() {
                    out.copy_from_slice(first);
                }
            }
            Pooling::LastToken => {
                if let Some(last) = tokens.next_back() {
                    out.copy_from_slice(last);
                }
            }
            Pooling::Mean => {
                let count = tokens.len();
                for row in tokens {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o += v;
                    }
                }
                let inv = 1.0 / (count as f32).max(1e-9);
                out.iter_mut().for_each(|o| *o *= inv);
            }
            Pooling::Max => {
                if let Some(first) = tokens.next() {
                    out.copy_from_slice(first);
                }
                for row in tokens {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = o.max(*v);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedder::l2_normalize;

    /// Three tokens of dimension 2.
    const ROWS: [f32; 6] = [1., 2., 3., 4., 5., -6.];

    #[test]
    fn mean_averages_every_token() {
        assert_eq!(Pooling::Mean.apply(&ROWS, 2), vec![3., 0.]);
    }

    #[test]
    fn max_takes_each_dimensions_maximum() {
        assert_eq!(Pooling::Max.apply(&ROWS, 2), vec![5., 4.]);
    }

    #[test]
    fn max_of_all_negative_values_is_negative() {
        assert_eq!(Pooling::Max.apply(&[-3., -2., -1., -5.], 2), vec![-1., -2.]);
    }

    #[test]
    fn cls_takes_the_first_token() {
        assert_eq!(Pooling::Cls.apply(&ROWS, 2), vec![1., 2.]);
    }

    #[test]
    fn last_token_takes_the_last_token() {
        assert_eq!(Pooling::LastToken.apply(&ROWS, 2), vec![5., -6.]);
    }

    #[test]
    fn no_tokens_pool_to_zero_not_nan() {
        for p in [
            Pooling::Mean,
            Pooling::Max,
            Pooling::Cls,
            Pooling::LastToken,
        ] {
            assert_eq!(p.apply(&[], 2), vec![0., 0.]);
        }
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows_finite() {
        let mut x = [3f32, 4.];
        l2_normalize(&mut x);
        assert_eq!(x, [0.6, 0.8]);
        let mut zero = [0f32, 0.];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0., 0.]);
    }
}
