//! The encoder families membatch's packed pass does not implement, run by
//! candle-transformers' models: DistilBERT and ModernBERT.
//!
//! Each text of a batch runs on its own (no padding, so no mask can leak
//! padding into a text, and a text's vector never depends on its batch);
//! candle parallelises inside each product. The packed pass stays the path
//! for the families it runs (see `docs/models.md` for both paths' speed).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{distilbert, modernbert};

use super::encoder::{BertConfig, Family, ForwardError, Packed};
use crate::embedder::CostPrior;

/// A candle-transformers encoder.
pub(crate) enum CandleModel {
    DistilBert(distilbert::DistilBertModel),
    ModernBert(modernbert::ModernBert),
}

/// A loaded candle encoder with the sizes membatch checks inputs against.
pub(crate) struct CandleEncoder {
    model: CandleModel,
    hidden: usize,
    vocab: usize,
    max_positions: usize,
    weight_bytes: usize,
    prior: CostPrior,
}

impl std::fmt::Debug for CandleEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = match self.model {
            CandleModel::DistilBert(_) => "distilbert",
            CandleModel::ModernBert(_) => "modernbert",
        };
        f.debug_struct("CandleEncoder")
            .field("family", &family)
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

/// What a candle-run batch holds, before any is measured. Candle's ops
/// allocate a tensor per step: per token, three times the f32 of the
/// hidden states, Q, K, V, the context and a gated feed-forward's two
/// activations (5·hidden + 2·intermediate); per token pair, the scores, their
/// softmax and the mask of every head at once (texts run one at a time).
pub(crate) fn cost_prior(config: &BertConfig) -> CostPrior {
    CostPrior::new(
        3 * 4 * (5 * config.hidden_size + 2 * config.intermediate_size) as u64,
        3 * 4 * config.num_attention_heads as u64,
    )
}

/// A `rope_theta` of ModernBERT's config: the older flat field
/// (`global_rope_theta`), else transformers' newer `rope_parameters` block
/// (`full_attention` / `sliding_attention`), else the published defaults.
fn rope_theta(raw: &serde_json::Value, flat: &str, kind: &str, default: f64) -> f64 {
    raw.get(flat)
        .and_then(|v| v.as_f64())
        .or_else(|| {
            raw.get("rope_parameters")
                .and_then(|p| p.get(kind))
                .and_then(|k| k.get("rope_theta"))
                .and_then(|v| v.as_f64())
        })
        .unwrap_or(default)
}

/// Every how many layers ModernBERT attends globally (the others use the
/// sliding window): `global_attn_every_n_layers`, checked against
/// transformers' newer `layer_types` list when both are there, or read from
/// that list alone. candle's model runs only this periodic pattern, so any
/// other list is refused.
pub(crate) fn global_every(raw: &serde_json::Value) -> Result<usize, String> {
    let every = usize_field(raw, "global_attn_every_n_layers");
    let Some(types) = raw.get("layer_types").and_then(|v| v.as_array()) else {
        return Ok(every.unwrap_or(3).max(1));
    };
    let global: Vec<bool> = types
        .iter()
        .map(|t| t.as_str() == Some("full_attention"))
        .collect();
    let n = every.unwrap_or_else(|| {
        global
            .iter()
            .skip(1)
            .position(|g| *g)
            .map_or(global.len(), |p| p + 1)
    });
    let periodic = n > 0 && global.iter().enumerate().all(|(i, g)| *g == (i % n == 0));
    if periodic {
        Ok(n)
    } else {
        Err(format!(
            "layer_types {types:?} is not full attention every {n} layers, the pattern membatch runs"
        ))
    }
}

fn usize_field(raw: &serde_json::Value, name: &str) -> Option<usize> {
    raw.get(name).and_then(|v| v.as_u64()).map(|v| v as usize)
}

impl CandleEncoder {
    /// Reads the weights of a candle-run family. The weights are held as
    /// candle reads them (`f32`); int8 is a packed-pass feature.
    pub(crate) fn load(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<Self> {
        let model = match config.family {
            Family::DistilBert => {
                let c: distilbert::Config = serde_json::from_value(config.raw.clone())
                    .map_err(|e| candle_core::Error::Msg(format!("config.json: {e}")))?;
                CandleModel::DistilBert(distilbert::DistilBertModel::load(vb, &c)?)
            }
            Family::ModernBert => {
                let raw = &config.raw;
                let c = modernbert::Config {
                    vocab_size: config.vocab_size,
                    hidden_size: config.hidden_size,
                    num_hidden_layers: config.num_hidden_layers,
                    num_attention_heads: config.num_attention_heads,
                    intermediate_size: config.intermediate_size,
                    max_position_embeddings: config.max_position_embeddings,
                    layer_norm_eps: config.layer_norm_eps,
                    pad_token_id: config.pad_token_id.unwrap_or(0) as u32,
                    global_attn_every_n_layers: global_every(raw)
                        .map_err(|e| candle_core::Error::Msg(format!("config.json: {e}")))?,
                    global_rope_theta: rope_theta(
                        raw,
                        "global_rope_theta",
                        "full_attention",
                        160_000.0,
                    ),
                    local_attention: usize_field(raw, "local_attention").unwrap_or(128),
                    local_rope_theta: rope_theta(
                        raw,
                        "local_rope_theta",
                        "sliding_attention",
                        10_000.0,
                    ),
                    classifier_config: None,
                };
                // candle names the base model's tensors `model.…`, as the
                // masked-LM checkpoints do; a bare ModernBertModel saves them
                // without the prefix.
                let vb = if vb.contains_tensor("model.embeddings.tok_embeddings.weight") {
                    vb
                } else {
                    vb.rename_f(|name: &str| {
                        name.strip_prefix("model.").unwrap_or(name).to_string()
                    })
                };
                CandleModel::ModernBert(modernbert::ModernBert::load(vb, &c)?)
            }
            other => candle_core::bail!("{other:?} runs in the packed pass, not candle"),
        };
        let (h, i, l) = (
            config.hidden_size,
            config.intermediate_size,
            config.num_hidden_layers,
        );
        // Approximate: the word and position tables plus each layer's four
        // attention and two (ModernBERT: three) feed-forward matrices.
        let weight_bytes = 4
            * ((config.vocab_size + config.max_position_embeddings) * h
                + l * (4 * h * h + 3 * h * i));
        Ok(CandleEncoder {
            model,
            hidden: h,
            vocab: config.vocab_size,
            max_positions: config.max_tokens(),
            weight_bytes,
            prior: cost_prior(config),
        })
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub(crate) fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    pub(crate) fn cost_prior(&self) -> CostPrior {
        self.prior
    }

    /// The last hidden state of every token, `tokens × hidden`, in the
    /// packed order.
    pub(crate) fn forward(&self, batch: &Packed) -> Result<Vec<f32>, CandleForwardError> {
        // These families read no token types (embedding batches carry none).
        batch.check(self.vocab, self.max_positions, usize::MAX)?;
        let mut out = Vec::with_capacity(batch.tokens() * self.hidden);
        for (start, len) in batch.spans() {
            if len == 0 {
                continue;
            }
            let ids = &batch.ids[start..start + len];
            let input = Tensor::from_slice(ids, (1, len), &Device::Cpu)?;
            let states = match &self.model {
                CandleModel::DistilBert(m) => {
                    // DistilBERT's mask marks the keys to hide: none. One row,
                    // broadcast over heads and queries.
                    let hide = Tensor::zeros((1, len), DType::U8, &Device::Cpu)?;
                    m.forward(&input, &hide)?
                }
                CandleModel::ModernBert(m) => {
                    // ModernBERT's mask marks the positions to attend: all.
                    let keep = Tensor::ones((1, len), DType::U32, &Device::Cpu)?;
                    m.forward(&input, &keep)?
                }
            };
            out.extend(states.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// Why a candle forward pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CandleForwardError {
    #[error(transparent)]
    Input(#[from] ForwardError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
