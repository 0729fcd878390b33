//! Loading a BERT model's files: `config.json` (checked against what the
//! encoder runs), the tokenizer, and the weights, after checking that
//! their load peak fits under the memory limit.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use super::candle_models::CandleEncoder;
use super::encoder::{Activation, BertConfig, Encoder, Family, SafetensorsFile, Tensors};
use super::metadata::read_json;
use super::Backbone;
use crate::error::{boxed, BoxError, Error, ModelFileError, Result};
use crate::memory::LoadEstimate;
use crate::precision::Precision;
use crate::source::ModelFiles;

/// The model's `config.json`, checked for what the encoder implements.
pub(super) fn load_bert_config(files: &ModelFiles) -> Result<(BertConfig, Activation)> {
    let path = files.required("config.json")?;
    let value: serde_json::Value = read_json(&path)?;
    let model_type = value.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = value
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let family = match model_type {
        Some(t) => Family::from_model_type(t),
        None => architectures
            .iter()
            .find_map(|a| Family::from_architecture(a)),
    };
    let Some(family) = family else {
        let found = model_type
            .map(str::to_string)
            .or_else(|| architectures.first().map(|a| a.to_string()))
            .unwrap_or_else(|| "unknown (no model_type)".to_string());
        return Err(Error::model_file(
            &path,
            ModelFileError::UnsupportedArchitecture { found },
        ));
    };
    let mut config: BertConfig = serde_json::from_value(value.clone())
        .map_err(|e| Error::model_file(&path, ModelFileError::Json(boxed(e))))?;
    config.family = family;
    config.raw = value;
    if config.position_embedding_type != "absolute" {
        return Err(Error::model_file(
            &path,
            ModelFileError::UnsupportedSetting {
                name: "position_embedding_type".into(),
                found: config.position_embedding_type.clone(),
                supported: "absolute".into(),
            },
        ));
    }
    let (h, heads, i) = (
        config.hidden_size,
        config.num_attention_heads,
        config.intermediate_size,
    );
    let invalid = |name: &str, found: String, reason: &str| {
        Error::model_file(
            &path,
            ModelFileError::InvalidSetting {
                name: name.into(),
                found,
                reason: reason.into(),
            },
        )
    };
    if heads == 0 || h == 0 || h % heads != 0 {
        return Err(invalid(
            "num_attention_heads",
            heads.to_string(),
            &format!("must be positive and divide hidden_size ({h})"),
        ));
    }
    if i == 0 || config.num_hidden_layers == 0 || config.vocab_size == 0 {
        return Err(invalid(
            "intermediate_size",
            format!(
                "{i} (layers {}, vocabulary {})",
                config.num_hidden_layers, config.vocab_size
            ),
            "the feed-forward width, the layer count and the vocabulary must be positive",
        ));
    }
    if config.family == Family::Mpnet && config.relative_attention_num_buckets < 4 {
        return Err(invalid(
            "relative_attention_num_buckets",
            config.relative_attention_num_buckets.to_string(),
            "must be at least 4 (two directions, exact and logarithmic buckets)",
        ));
    }
    if config.max_tokens() < 2 {
        return Err(invalid(
            "max_position_embeddings",
            config.max_position_embeddings.to_string(),
            "leaves fewer than two positions for a text",
        ));
    }
    // The candle-run families read their own fields: check them now, so a
    // bad file is named here rather than when the weights are read.
    match family {
        Family::DistilBert => {
            serde_json::from_value::<candle_transformers::models::distilbert::Config>(
                config.raw.clone(),
            )
            .map_err(|e| Error::model_file(&path, ModelFileError::Json(boxed(e))))?;
        }
        Family::ModernBert => {
            super::candle_models::global_every(&config.raw)
                .map_err(|reason| invalid("layer_types", "see the file".into(), &reason))?;
        }
        _ => {}
    }
    if !(config.layer_norm_eps > 0.0 && config.layer_norm_eps.is_finite()) {
        return Err(Error::model_file(
            &path,
            ModelFileError::InvalidSetting {
                name: "layer_norm_eps".into(),
                found: config.layer_norm_eps.to_string(),
                reason: "must be a positive number (layer norm divides by sqrt(variance + eps))"
                    .into(),
            },
        ));
    }
    let Some(activation) = Activation::parse(&config.hidden_act) else {
        return Err(Error::model_file(
            &path,
            ModelFileError::UnsupportedSetting {
                name: "hidden_act".into(),
                found: config.hidden_act.clone(),
                supported: Activation::SUPPORTED.into(),
            },
        ));
    };
    Ok((config, activation))
}

pub(super) fn load_tokenizer(files: &ModelFiles) -> Result<Tokenizer> {
    let path = files.required("tokenizer.json")?;
    Tokenizer::from_file(&path)
        .map_err(|e| Error::model_file(&path, ModelFileError::Tokenizer(BoxError::from(e))))
}

pub(super) fn load_weights(
    files: &ModelFiles,
    config: &BertConfig,
    activation: Activation,
    int8: bool,
) -> Result<Backbone> {
    if config.family.is_packed() {
        read_tensors(files, |tensors| {
            Encoder::load(tensors, config, activation, int8).map(Backbone::Packed)
        })
    } else if int8 {
        Err(Error::invalid_config(
            "precision",
            "int8",
            format!(
                "int8 runs in membatch's packed pass (BERT, RoBERTa, MPNet); {:?} models run in f32",
                config.family
            ),
        ))
    } else {
        read_weights(files, |vb| {
            CandleEncoder::load(vb, config).map(Backbone::Candle)
        })
    }
}

/// Opens `model.safetensors` for the packed pass, which reads each tensor
/// straight into its own buffers (no mapping, no intermediate copy: the
/// load peaks at the weights it keeps); errors name the file.
pub(super) fn read_tensors<T>(
    files: &ModelFiles,
    read: impl FnOnce(Tensors) -> candle_core::Result<T>,
) -> Result<T> {
    let path = safetensors_path(files)?;
    let weights_error =
        |e: candle_core::Error| Error::model_file(&path, ModelFileError::Weights(boxed(e)));
    let file = SafetensorsFile::open(&path).map_err(weights_error)?;
    let read = read(Tensors::new(&file)).map_err(weights_error);
    drop(file);
    // The weights now live in their own buffers (all but the word table,
    // whose rows are read as batches use them, a page each with readahead
    // off): the file's cached pages would only crowd a container's memory.
    crate::memory::forget_file_cache(&path);
    read
}

fn safetensors_path(files: &ModelFiles) -> Result<std::path::PathBuf> {
    match files.required("model.safetensors") {
        Ok(p) => Ok(p),
        Err(Error::ModelFile { path, .. }) if has_pytorch_weights(files) => Err(Error::model_file(
            path,
            ModelFileError::Missing {
                hint: " (only pytorch_model.bin is present: membatch reads safetensors; convert the weights)".into(),
            },
        )),
        Err(e) => Err(e),
    }
}

/// Memory-maps `model.safetensors` and hands it to `read` (candle's own
/// models), which copies what it needs into its own buffers; errors name
/// the file.
pub(super) fn read_weights<T>(
    files: &ModelFiles,
    read: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<T> {
    let path = safetensors_path(files)?;
    let weights_error =
        |e: candle_core::Error| Error::model_file(&path, ModelFileError::Weights(boxed(e)));
    // SAFETY: the file is memory-mapped read-only. Like every mmap user we
    // rely on nobody truncating or rewriting it while the model is loaded;
    // model files are written once and then only read.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }
        .map_err(weights_error)?;
    let read = read(vb).map_err(weights_error);
    // The weights now live in their own buffers and the file is unmapped:
    // its cached pages would only crowd a container's memory.
    crate::memory::forget_file_cache(&path);
    read
}

/// What loading the weights costs (see [`LoadEstimate`]), from the
/// configuration alone. The packed pass reads every tensor straight into
/// its final form: what stays is the dense layers, the small tables and
/// the norms; while loading, one dense layer is held in `f32` beside its
/// packed copy. Its word table is read a row at a time as batches first
/// use each row: on demand, not part of the load. Candle's models read
/// through a mapped file and hold the word table whole, twice in `f32`
/// while it takes its final form.
pub(super) fn load_estimate(
    config: &BertConfig,
    precision: Precision,
    max_seq_length: usize,
) -> LoadEstimate {
    // Saturating: a config.json with absurd sizes gives an estimate no
    // machine has (a typed refusal), never an overflow.
    let mul = |a: u64, b: u64| a.saturating_mul(b);
    let (h, i) = (config.hidden_size as u64, config.intermediate_size as u64);
    let layers = config.num_hidden_layers as u64;
    let word = mul(config.vocab_size as u64, h);
    let dense = mul(layers, mul(4, mul(h, h)).saturating_add(mul(2, mul(h, i))));
    let small = mul(
        (config.max_position_embeddings as u64).saturating_add(config.type_vocab_size as u64),
        h,
    )
    .saturating_add(mul(layers, mul(9, h).saturating_add(i)))
    .saturating_add(mul(2, h));
    // Int8 holds one byte per value plus, per 32 values, a 4-byte scale
    // (and, for the VNNI kernel, a 4-byte zero-point offset).
    let held = |values: u64| match precision {
        Precision::F32 => mul(4, values),
        Precision::Int8 => values.saturating_add(mul(8, values.div_ceil(32))),
    };
    let resident = held(dense).saturating_add(mul(4, small));
    let first_batch = super::cost_prior_of(config).bytes(1, max_seq_length);
    if config.family.is_packed() {
        let word_held = match precision {
            Precision::F32 => mul(4, word),
            Precision::Int8 => word.saturating_add(mul(4, word.div_ceil(32))),
        };
        let largest_layer = mul(3, mul(h, h)).max(mul(h, i));
        LoadEstimate::new(resident, mul(8, largest_layer), first_batch).with_on_demand(word_held)
    } else {
        LoadEstimate::new(
            resident.saturating_add(mul(4, word)),
            mul(4, word),
            first_batch,
        )
    }
}

fn has_pytorch_weights(files: &ModelFiles) -> bool {
    matches!(files.optional("pytorch_model.bin"), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> BertConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536,
            "max_position_embeddings": 512
        }))
        .unwrap()
    }

    #[test]
    fn the_load_holds_the_dense_weights_and_reads_the_word_table_on_demand() {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        // all-MiniLM-L6-v2: 86.7 MiB of f32 weights, 44.7 MiB of which is
        // the word table, read a row at a time by the batches.
        let f32 = load_estimate(&minilm(), Precision::F32, 256);
        let int8 = load_estimate(&minilm(), Precision::Int8, 256);
        assert!((40.0..45.0).contains(&mib(f32.resident_bytes)), "{f32:?}");
        assert!((44.0..45.0).contains(&mib(f32.on_demand_bytes)), "{f32:?}");
        assert!((12.0..14.0).contains(&mib(int8.resident_bytes)), "{int8:?}");
        assert!(
            (11.0..13.0).contains(&mib(int8.on_demand_bytes)),
            "{int8:?}"
        );
        // One layer read in f32 beside its packed copy: 4.5 MiB.
        assert_eq!(f32.transient_bytes, 8 * 384 * 1536);
        // One text of 256 tokens: about 3.4 MiB of buffers.
        assert!((3.0..4.5).contains(&mib(f32.first_batch_bytes)), "{f32:?}");
        // Through candle's mapped reader, the word table whole, twice
        // while loading.
        let mut distil = minilm();
        distil.family = Family::DistilBert;
        let d = load_estimate(&distil, Precision::F32, 256);
        assert!((125.0..135.0).contains(&mib(d.peak_bytes())), "{d:?}");
        assert_eq!(d.on_demand_bytes, 0);
        // Absurd sizes saturate instead of overflowing.
        let mut huge = minilm();
        huge.hidden_size = 1 << 40;
        assert_eq!(
            load_estimate(&huge, Precision::F32, 256).needed_bytes(),
            u64::MAX
        );
    }
}
