//! Reading an encoder's weights: every tensor checked for its shape, the
//! layers' Q, K and V stacked into one product, int8 quantised as read.

use candle_core::Result as CandleResult;

use super::config::{Activation, BertConfig, Family};
use super::int8::Int8Weights;
use super::linear::Linear;
use super::relative::RelativeBias;
use super::tensors::Tensors;
use super::words::{OnDemandWords, WordTable};
use super::{Encoder, Layer, Norm};

pub(super) fn vector(vb: &Tensors, name: &str, len: usize) -> CandleResult<Vec<f32>> {
    vb.vector(name, len)
}

pub(super) fn matrix(vb: &Tensors, name: &str, rows: usize, cols: usize) -> CandleResult<Vec<f32>> {
    vb.matrix(name, rows, cols)
}

pub(super) fn linear(vb: &Tensors, inputs: usize, outputs: usize) -> CandleResult<Linear> {
    stacked(std::slice::from_ref(vb), inputs, outputs, false)
}

/// Layers over the same input (`outputs` each) read and stacked into one,
/// their outputs side by side, so that one product replaces several; in
/// int8 with `int8`.
pub(super) fn stacked(
    vbs: &[Tensors],
    inputs: usize,
    outputs: usize,
    int8: bool,
) -> CandleResult<Linear> {
    let mut weight = Vec::with_capacity(vbs.len() * outputs * inputs);
    let mut bias = Vec::with_capacity(vbs.len() * outputs);
    for vb in vbs {
        weight.extend(matrix(vb, "weight", outputs, inputs)?);
        bias.extend(vector(vb, "bias", outputs)?);
    }
    Ok(if int8 {
        Linear::new_int8(&weight, bias, inputs)
    } else {
        Linear::new(&weight, bias, inputs)
    })
}

impl Encoder {
    /// Reads the weights (names as transformers saves the family's base
    /// model, with or without a head's prefix such as `bert.` or `mpnet.`)
    /// and checks every shape. `activation` is `config.hidden_act`, already
    /// checked by the caller. With `int8`, each tensor is quantised as soon
    /// as it is read, so the whole model never sits in memory in `f32`.
    pub(crate) fn load(
        vb: Tensors,
        config: &BertConfig,
        activation: Activation,
        int8: bool,
    ) -> CandleResult<Self> {
        let mut prefixes = vec![
            String::new(),
            "bert".into(),
            "roberta".into(),
            "mpnet".into(),
        ];
        prefixes.extend(config.model_type.clone());
        let prefix = prefixes
            .into_iter()
            .find(|p| {
                let name = "embeddings.word_embeddings.weight";
                vb.contains_tensor(&if p.is_empty() {
                    name.to_string()
                } else {
                    format!("{p}.{name}")
                })
            })
            .unwrap_or_default();
        let vb = if prefix.is_empty() { vb } else { vb.pp(prefix) };
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        let i = config.intermediate_size;
        if h == 0 || i == 0 || heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!(
                "hidden_size {h} must be a positive multiple of num_attention_heads {heads}, \
                 and intermediate_size {i} positive"
            );
        }
        if !config.family.is_packed() {
            candle_core::bail!("the packed pass does not run {:?} models", config.family);
        }
        let offset = config.position_offset();
        let max_positions = config.max_tokens();
        if max_positions == 0 {
            candle_core::bail!(
                "max_position_embeddings {} leaves no position after the first ({offset})",
                config.max_position_embeddings
            );
        }
        let emb = vb.pp("embeddings");
        let token_type = if config.family == Family::Mpnet {
            vec![0f32; h]
        } else {
            let token_types = config.type_vocab_size.max(1);
            matrix(&emb, "token_type_embeddings.weight", token_types, h)?
        };
        let relative = match config.family {
            Family::Mpnet => Some(RelativeBias::load(
                &vb.pp("encoder"),
                config.relative_attention_num_buckets,
                heads,
                max_positions,
            )?),
            _ => None,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let vb = vb.pp(format!("encoder.layer.{n}"));
            let attn = vb.pp("attention");
            // BERT and RoBERTa: attention.self.{query,key,value},
            // attention.output.{dense,LayerNorm}; MPNet: attention.attn.{q,k,v,o},
            // attention.LayerNorm.
            let (qkv, out, norm) = match config.family {
                Family::Mpnet => (
                    [attn.pp("attn.q"), attn.pp("attn.k"), attn.pp("attn.v")],
                    attn.pp("attn.o"),
                    attn.pp("LayerNorm"),
                ),
                _ => (
                    ["query", "key", "value"].map(|p| attn.pp("self").pp(p)),
                    attn.pp("output.dense"),
                    attn.pp("output.LayerNorm"),
                ),
            };
            let dense = |vb: Tensors, inputs, outputs| stacked(&[vb], inputs, outputs, int8);
            layers.push(Layer {
                qkv: stacked(&qkv, h, h, int8)?,
                attention_out: dense(out, h, h)?,
                attention_norm: Norm::load(&norm, h)?,
                intermediate: dense(vb.pp("intermediate.dense"), h, i)?,
                output: dense(vb.pp("output.dense"), i, h)?,
                output_norm: Norm::load(&vb.pp("output.LayerNorm"), h)?,
            });
        }
        let mut position = matrix(
            &emb,
            "position_embeddings.weight",
            config.max_position_embeddings,
            h,
        )?;
        // Rows before the family's first position are never used.
        position.drain(..offset * h);
        let (name, vocab) = ("word_embeddings.weight", config.vocab_size);
        let word = if let Some(source) = emb.row_source(name, (vocab, h)) {
            WordTable::OnDemand(std::sync::Arc::new(OnDemandWords::new(
                source, vocab, h, int8,
            )))
        } else if int8 {
            // Quantised a few hundred rows at a time: the table (the
            // model's largest tensor) never sits in memory in f32.
            WordTable::Int8(Int8Weights::quantize_from(vocab, h, |rows, out| {
                emb.read_rows(name, (vocab, h), rows, out)
            })?)
        } else {
            WordTable::F32(matrix(&emb, name, vocab, h)?)
        };
        Ok(Encoder {
            word,
            position,
            token_type,
            relative,
            embedding_norm: Norm::load(&emb.pp("LayerNorm"), h)?,
            layers,
            activation,
            hidden: h,
            heads,
            vocab: config.vocab_size,
            max_positions,
            eps: config.layer_norm_eps as f32,
        })
    }
}
