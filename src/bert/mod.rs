//! [`BertEmbedder`]: BERT-family sentence embedders on candle's CPU backend.
//!
//! It reproduces sentence-transformers' output for models such as
//! all-MiniLM-L6-v2: the same tokenisation (truncated at the model's
//! `max_seq_length`, padded to the longest text of the batch), the same
//! pooling over the attention mask and the same normalisation, as the model's
//! own sentence-transformers files configure them.

mod encoder;
mod metadata;
mod pooling;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{boxed, BoxError, Error, ModelFileError, Result};
use crate::memory::MemoryBudget;
use crate::source::{ModelFiles, ModelSource};
use crate::{BatchEmbedder, Config, Embedder, ModelConfig, ModelShape, Precision};
use encoder::{Activation, BertConfig, Encoder, Packed};
use metadata::{read_json, SentenceConfig};
pub use pooling::Pooling;

/// How pooled token states become the output vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSettings {
    /// How token states are pooled.
    pub pooling: Pooling,
    /// Whether vectors are L2-normalised.
    pub normalize: bool,
    /// Texts are truncated to this many tokens, special tokens included.
    pub max_seq_length: usize,
    /// How the weights are held.
    pub precision: Precision,
}

/// A BERT sentence embedder on the CPU.
///
/// Weights are read with candle; the forward pass is membatch's own (packed
/// sequences, `gemm` products, in-place element-wise steps; see
/// `docs/benchmarks.md`).
///
/// # Example
///
/// ```no_run
/// use membatch::{BertEmbedder, Embedder, ModelSource};
///
/// // The default model: $MEMBATCH_MODEL, else the copy scripts/fetch-model.sh
/// // placed, else sentence-transformers/all-MiniLM-L6-v2 from the hub cache.
/// let embedder = BertEmbedder::builder().threads(2).build()?;
/// let vectors = embedder.embed(&["A man is eating food.", "A man is riding a horse."])?;
/// assert_eq!(vectors[0].len(), embedder.dimension());
///
/// // Or a local directory in the sentence-transformers layout.
/// let local = BertEmbedder::load(ModelSource::dir("models/all-MiniLM-L6-v2"))?;
/// # Ok::<(), membatch::Error>(())
/// ```
pub struct BertEmbedder {
    encoder: Encoder,
    tokenizer: Tokenizer,
    settings: OutputSettings,
    dimension: usize,
    shape: ModelShape,
    pool: Option<rayon::ThreadPool>,
    name: String,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("name", &self.name)
            .field("dimension", &self.dimension)
            .field("settings", &self.settings)
            .field("threads", &self.threads())
            .finish_non_exhaustive()
    }
}

impl BertEmbedder {
    /// A builder with every setting at its default.
    pub fn builder() -> BertEmbedderBuilder {
        BertEmbedderBuilder::default()
    }

    /// Loads a model with default settings.
    ///
    /// # Errors
    ///
    /// As [`BertEmbedderBuilder::build`].
    pub fn load(source: impl Into<ModelSource>) -> Result<Self> {
        Self::builder().source(source).build()
    }

    /// Assembles an embedder from loaded weights and tokenizer.
    ///
    /// The tokenizer's own truncation and padding settings are replaced:
    /// texts are truncated at `settings.max_seq_length` and never padded
    /// (the encoder packs them).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `max_seq_length` is below 2 or above the
    /// model's position embeddings.
    fn assemble(
        encoder: Encoder,
        config: &BertConfig,
        mut tokenizer: Tokenizer,
        settings: OutputSettings,
        name: impl Into<String>,
    ) -> Result<Self> {
        let max = settings.max_seq_length;
        if max < 2 || max > config.max_position_embeddings {
            return Err(Error::invalid_config(
                "max_seq_length",
                max,
                format!(
                    "must be between 2 (room for [CLS] and [SEP]) and the model's max_position_embeddings ({})",
                    config.max_position_embeddings
                ),
            ));
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
        tokenizer.with_padding(None);
        Ok(BertEmbedder {
            encoder,
            tokenizer,
            settings,
            dimension: config.hidden_size,
            shape: ModelShape {
                hidden_size: config.hidden_size,
                num_heads: config.num_attention_heads,
                num_layers: config.num_hidden_layers,
                intermediate_size: config.intermediate_size,
            },
            pool: None,
            name: name.into(),
        })
    }

    /// The output settings in force.
    pub fn settings(&self) -> OutputSettings {
        self.settings
    }

    /// The number of compute threads, when a dedicated pool was requested.
    pub fn threads(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.current_num_threads())
    }

    /// The tokenizer, as this embedder runs it: truncation at
    /// `max_seq_length`, no padding. Clone it and change its settings to
    /// measure texts differently (a chunker wants untruncated counts).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The token ids each text becomes (`[CLS]` and `[SEP]` included, truncated
    /// at `max_seq_length`, unpadded): what the model sees, for inspection.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`] when the tokenizer fails.
    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self.run(|| self.encode(texts))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Runs `f` on the dedicated thread pool, if any, so that candle's and
    /// the tokenizer's rayon work stays within it.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<tokenizers::Encoding>> {
        self.tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenization(BoxError::from(e)))
    }

    fn forward(&self, encodings: &[tokenizers::Encoding]) -> Result<Vec<Vec<f32>>> {
        let batch = Packed::new(encodings.iter().map(|e| e.get_ids()));
        let hidden = self
            .encoder
            .forward(&batch)
            .map_err(|e| Error::Inference(boxed(e)))?;
        let width = self.encoder.hidden_size();
        Ok(batch
            .spans()
            .map(|(start, len)| {
                let rows = &hidden[start * width..(start + len) * width];
                let mut v = self.settings.pooling.apply(rows, width);
                if self.settings.normalize {
                    pooling::l2_normalize(&mut v);
                }
                v
            })
            .collect())
    }
}

impl BertEmbedder {
    /// Loads the model a [`ModelConfig`] describes.
    ///
    /// # Errors
    ///
    /// As [`BertEmbedderBuilder::build`].
    pub fn from_config(config: &ModelConfig) -> Result<Self> {
        let mut b = Self::builder();
        if let Some(s) = &config.source {
            b = b.source(s.clone());
        }
        if let Some(n) = config.normalize {
            b = b.normalize(n);
        }
        if let Some(t) = config.threads {
            b = b.threads(t);
        }
        if let Some(m) = config.max_seq_length {
            b = b.max_seq_length(m);
        }
        b.precision(config.precision).build()
    }
}

impl BatchEmbedder<BertEmbedder> {
    /// Loads the model and builds the whole pipeline from one [`Config`]
    /// (e.g. [`Config::from_env`]).
    ///
    /// ```no_run
    /// use membatch::{BatchEmbedder, Config};
    ///
    /// let batcher = BatchEmbedder::from_config(&Config::from_env()?)?;
    /// let vectors = batcher.embed(&["first text", "second text"])?;
    /// # Ok::<(), membatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`BertEmbedder::from_config`] and [`BatchEmbedder::new`].
    pub fn from_config(config: &Config) -> Result<Self> {
        let embedder = BertEmbedder::from_config(&config.model)?;
        BatchEmbedder::new(
            embedder,
            MemoryBudget::new(config.memory.clone()),
            config.batch,
        )
    }
}

impl Embedder for BertEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|| {
            let encodings = self.encode(texts)?;
            self.forward(&encodings)
        })
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_seq_length(&self) -> usize {
        self.settings.max_seq_length
    }

    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|| Ok(self.encode(texts)?.iter().map(|e| e.len()).collect()))
    }

    fn shape(&self) -> Option<ModelShape> {
        Some(self.shape)
    }

    /// BERT's normaliser and pre-tokenizer make every whitespace run,
    /// punctuation mark and CJK character a word boundary, WordPiece works
    /// word by word, and truncation keeps the first tokens.
    fn tokenizes_word_by_word(&self) -> bool {
        true
    }
}

/// Settings for loading a [`BertEmbedder`]; [`build`](Self::build) checks them.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct BertEmbedderBuilder {
    source: Option<ModelSource>,
    normalize: Option<bool>,
    threads: Option<usize>,
    max_seq_length: Option<usize>,
    precision: Precision,
}

impl BertEmbedderBuilder {
    /// Where to load the model from. Default:
    /// [`ModelSource::from_env_or_default`].
    pub fn source(mut self, source: impl Into<ModelSource>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Forces L2 normalisation on or off. Default: on when the model's
    /// `modules.json` has a `Normalize` module.
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.normalize = Some(normalize);
        self
    }

    /// Runs tokenisation and forward passes on a dedicated pool of `threads`
    /// threads. Default: none, so candle uses rayon's global pool (sized by
    /// `RAYON_NUM_THREADS`, else the number of CPUs). See `docs/threads.md`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Truncates texts to this many tokens (special tokens included). Default:
    /// `max_seq_length` from `sentence_bert_config.json`, else the model's
    /// `max_position_embeddings`.
    pub fn max_seq_length(mut self, tokens: usize) -> Self {
        self.max_seq_length = Some(tokens);
        self
    }

    /// Holds the weights in int8 or `f32` (see [`Precision`]). Default:
    /// `f32`.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Loads the model.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidConfig`] for a zero thread count or a sequence
    ///   length the model cannot take;
    /// - [`Error::ModelFile`] naming the file for a missing directory or
    ///   file, unreadable JSON, a missing or misshapen tensor, a corrupt
    ///   weights file, an unsupported architecture, pooling or module;
    /// - [`Error::Hub`] when a hub file can be neither found in the cache nor
    ///   fetched;
    /// - [`Error::ThreadPool`] when the thread pool cannot start.
    pub fn build(self) -> Result<BertEmbedder> {
        if self.threads == Some(0) {
            return Err(Error::invalid_config(
                "threads",
                0,
                "at least one compute thread is needed",
            ));
        }
        let source = self.source.unwrap_or_else(ModelSource::from_env_or_default);
        tracing::info!(model = %source, "loading BERT embedder");
        let files = source.resolve()?;
        let (config, activation) = load_bert_config(&files)?;
        check_room_to_load(&config, self.precision)?;
        let sentence = SentenceConfig::load(&files)?;
        let tokenizer = load_tokenizer(&files)?;
        let int8 = self.precision == Precision::Int8;
        let encoder = load_weights(&files, &config, activation, int8)?;
        // Loading went through temporary tensors (and, for int8, the f32
        // weights): hand that memory back before the first batch measures.
        crate::memory::trim();
        let settings = OutputSettings {
            pooling: sentence.pooling,
            normalize: self.normalize.unwrap_or(sentence.normalize),
            max_seq_length: self
                .max_seq_length
                .or(sentence.max_seq_length)
                .unwrap_or(config.max_position_embeddings),
            precision: self.precision,
        };
        let mut embedder =
            BertEmbedder::assemble(encoder, &config, tokenizer, settings, source.id())?;
        if let Some(threads) = self.threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("membatch-compute-{i}"))
                .build()
                .map_err(|e| Error::ThreadPool {
                    threads,
                    source: boxed(e),
                })?;
            embedder.pool = Some(pool);
        }
        tracing::info!(
            model = %source,
            dimension = embedder.dimension,
            weight_bytes = embedder.encoder.weight_bytes(),
            ?settings,
            threads = ?embedder.threads(),
            "BERT embedder ready"
        );
        Ok(embedder)
    }
}

/// The model's `config.json`, checked for what the encoder implements.
fn load_bert_config(files: &ModelFiles) -> Result<(BertConfig, Activation)> {
    let path = files.required("config.json")?;
    let value: serde_json::Value = read_json(&path)?;
    let model_type = value.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = value
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let is_bert = match model_type {
        Some(t) => t == "bert",
        None => architectures.iter().any(|a| a.starts_with("Bert")),
    };
    if !is_bert {
        let found = model_type
            .map(str::to_string)
            .or_else(|| architectures.first().map(|a| a.to_string()))
            .unwrap_or_else(|| "unknown (no model_type)".to_string());
        return Err(Error::model_file(
            &path,
            ModelFileError::UnsupportedArchitecture { found },
        ));
    }
    let config: BertConfig = serde_json::from_value(value)
        .map_err(|e| Error::model_file(&path, ModelFileError::Json(boxed(e))))?;
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

fn load_tokenizer(files: &ModelFiles) -> Result<Tokenizer> {
    let path = files.required("tokenizer.json")?;
    Tokenizer::from_file(&path)
        .map_err(|e| Error::model_file(&path, ModelFileError::Tokenizer(BoxError::from(e))))
}

fn load_weights(
    files: &ModelFiles,
    config: &BertConfig,
    activation: Activation,
    int8: bool,
) -> Result<Encoder> {
    let path = match files.required("model.safetensors") {
        Ok(p) => p,
        Err(Error::ModelFile { path, .. }) if has_pytorch_weights(files) => {
            return Err(Error::model_file(
                path,
                ModelFileError::Missing {
                    hint: " (only pytorch_model.bin is present: membatch reads safetensors; convert the weights)".into(),
                },
            ))
        }
        Err(e) => return Err(e),
    };
    let weights_error =
        |e: candle_core::Error| Error::model_file(&path, ModelFileError::Weights(boxed(e)));
    // SAFETY: the file is memory-mapped read-only. Like every mmap user we
    // rely on nobody truncating or rewriting it while the model is loaded;
    // model files are written once and then only read.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }
        .map_err(weights_error)?;
    Encoder::load(vb, config, activation, int8).map_err(weights_error)
}

/// The peak memory of loading the weights: every tensor in its final form,
/// except that the word embedding table (read last, and the largest) is
/// alive twice in `f32` at that moment (candle's tensor and the copy taken
/// from it) before it takes its final form.
fn load_peak_bytes(config: &BertConfig, precision: Precision) -> u64 {
    let (h, i) = (config.hidden_size as u64, config.intermediate_size as u64);
    let layers = config.num_hidden_layers as u64;
    let word = config.vocab_size as u64 * h;
    let dense = layers * (4 * h * h + 2 * h * i);
    let small = (config.max_position_embeddings as u64 + config.type_vocab_size as u64) * h
        + layers * (9 * h + i)
        + 2 * h;
    // Int8 holds one byte per value plus a 4-byte scale per 32 values.
    let held = |values: u64| match precision {
        Precision::F32 => 4 * values,
        Precision::Int8 => values + 4 * values.div_ceil(32),
    };
    held(dense) + 4 * small + 2 * 4 * word
}

/// Refuses to load when the weights cannot fit in the memory free under
/// the process's limit: a typed error instead of an OOM kill.
fn check_room_to_load(config: &BertConfig, precision: Precision) -> Result<()> {
    use crate::memory::{MemoryProbe, SystemProbe};
    let snapshot = SystemProbe::new().snapshot();
    let available = match snapshot.cgroup_limit_bytes() {
        Some(limit) => limit.saturating_sub(snapshot.figure_bytes()),
        None => snapshot.system_available_bytes,
    };
    // An eighth on top for the tokenizer, the allocator's slack and the
    // first batch's own needs.
    let needed = load_peak_bytes(config, precision) / 8 * 9;
    tracing::debug!(needed, available, %precision, "memory for loading the weights");
    if needed > available {
        return Err(Error::ModelTooLarge {
            needed,
            available,
            precision,
        });
    }
    Ok(())
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
    fn the_load_peak_is_the_weights_plus_a_second_word_table() {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        // all-MiniLM-L6-v2: 86.7 MiB of f32 weights, 44.7 MiB of which is
        // the word table; measured load peaks (cgroup) were about 131 and
        // 107 MiB including the process itself.
        let f32 = mib(load_peak_bytes(&minilm(), Precision::F32));
        let int8 = mib(load_peak_bytes(&minilm(), Precision::Int8));
        assert!((125.0..135.0).contains(&f32), "{f32}");
        assert!((95.0..105.0).contains(&int8), "{int8}");
    }
}
