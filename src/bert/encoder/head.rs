//! A cross-encoder's classification head.

use candle_core::Result as CandleResult;

use super::config::Family;
use super::linear::{self, Linear};
use super::load::linear;
use super::tensors::Tensors;

/// A sequence-classification head over the first token's state:
/// `out(tanh(dense(x)))`. BERT's (`bert.pooler.dense`, `classifier`) and
/// RoBERTa's (`classifier.dense`, `classifier.out_proj`) have this one shape.
#[derive(Debug, Clone)]
pub(crate) struct ClassifierHead {
    dense: Linear,
    out: Linear,
}

impl ClassifierHead {
    /// Reads a one-label head (a relevance score) for `family`.
    pub(crate) fn load(vb: &Tensors, family: Family, hidden: usize) -> CandleResult<Self> {
        let (dense, out) = match family {
            Family::Bert => {
                let prefix = if vb.contains_tensor("bert.pooler.dense.weight") {
                    "bert.pooler.dense"
                } else {
                    "pooler.dense"
                };
                (vb.pp(prefix), vb.pp("classifier"))
            }
            Family::Roberta => (vb.pp("classifier.dense"), vb.pp("classifier.out_proj")),
            other => candle_core::bail!(
                "membatch runs sequence classification for BERT and RoBERTa-family models, not {other:?}"
            ),
        };
        Ok(ClassifierHead {
            dense: linear(&dense, hidden, hidden)?,
            out: linear(&out, hidden, 1)?,
        })
    }

    /// One score per sequence from its first token's last hidden state
    /// (`firsts`: `sequences × hidden`).
    pub(crate) fn scores(&self, firsts: Vec<f32>) -> Vec<f32> {
        let h = self.dense.outputs();
        let n = firsts.len() / h.max(1);
        let mut pooled = vec![0f32; n * h];
        let mut scratch = linear::Scratch::default();
        self.dense.forward(&firsts, &mut pooled, &mut scratch);
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        let mut scores = vec![0f32; n];
        self.out.forward(&pooled, &mut scores, &mut scratch);
        scores
    }

    pub(crate) fn weight_bytes(&self) -> usize {
        [&self.dense, &self.out]
            .iter()
            .map(|d| d.weight_bytes())
            .sum()
    }
}
