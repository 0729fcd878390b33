//! [`BertEmbedder`]: BERT-family sentence embedders on candle's CPU backend.
//!
//! It reproduces sentence-transformers' output for models such as
//! all-MiniLM-L6-v2: the same tokenisation (truncated at the model's
//! `max_seq_length`), the same pooling over each text's own tokens and the
//! same normalisation, as the model's own sentence-transformers files
//! configure them. A batch's texts are packed one after another without
//! padding (`encoder`); families membatch's pass does not implement run on
//! candle-transformers' models.

mod builder;
mod candle_models;
mod encoder;
mod lazy;
mod load;
mod metadata;
mod pooling;
mod prompts;
mod rerank;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokenizers::Tokenizer;

use crate::embedder::{l2_normalize, CostPrior, EmbedOptions, Embedder, ModelInfo, Tokens};
use crate::error::{boxed, BoxError, Error, Result};
use crate::memory::MemoryProbe;
use crate::model_config::ModelConfig;
use crate::precision::Precision;
use crate::pressure::PressureLevel;
use crate::source::ModelSource;
pub use builder::BertEmbedderBuilder;

/// The forward pass's kernels and their baselines, for membatch's own
/// criterion benches (`benches/benchmarks/gemm.rs`, feature
/// `bench-internals`). Not part of the API: it may change or go in any
/// release.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_kernels;
use candle_models::CandleEncoder;
use encoder::{BertConfig, Encoder, Packed};
pub use lazy::BertLoader;
pub use pooling::Pooling;
use prompts::{ActivePrompt, Prompts};
pub use rerank::BertReranker;

/// How pooled token states become the output vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutputSettings {
    /// How token states are pooled.
    pub pooling: Pooling,
    /// Whether vectors are L2-normalised.
    pub normalize: bool,
    /// Texts are truncated to this many tokens, special tokens included.
    pub max_seq_length: usize,
    /// How the weights are held.
    pub precision: Precision,
    /// The first dimensions kept of each vector (Matryoshka truncation,
    /// before normalisation), when fewer than the model's.
    pub dimensions: Option<usize>,
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
/// // No source: the copy scripts/fetch-model.sh placed, else
/// // sentence-transformers/all-MiniLM-L6-v2 from the hub cache
/// // (`Config::from_env()` reads $MEMBATCH_MODEL into the model settings).
/// let embedder = BertEmbedder::builder().threads(2).build()?;
/// let vectors = embedder.embed(&["A man is eating food.", "A man is riding a horse."])?;
/// assert_eq!(vectors[0].len(), embedder.info().dimension);
///
/// // Or a local directory in the sentence-transformers layout.
/// let local = BertEmbedder::load(ModelSource::dir("models/all-MiniLM-L6-v2"))?;
/// # Ok::<(), membatch::Error>(())
/// ```
pub struct BertEmbedder {
    encoder: Backbone,
    tokenizer: Arc<Tokenizer>,
    settings: OutputSettings,
    prompts: Prompts,
    /// The prompt put before every text, when one was chosen.
    prompt: Option<ActivePrompt>,
    info: ModelInfo,
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Reads the memory free under the limit before each batch: the
    /// budget's probe when the builder was given one.
    probe: Arc<dyn MemoryProbe>,
    name: String,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("name", &self.name)
            .field("dimension", &self.info.dimension)
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

    /// The output settings in force.
    pub fn settings(&self) -> OutputSettings {
        self.settings
    }

    /// The model's named prompts (`prompts` in
    /// `config_sentence_transformers.json`): name → text put before an input.
    pub fn prompts(&self) -> &BTreeMap<String, String> {
        &self.prompts.texts
    }

    /// The name of the prompt put before every text, if any (see
    /// [`BertEmbedderBuilder::prompt_name`]).
    pub fn prompt_name(&self) -> Option<&str> {
        self.prompt.as_ref().map(|p| p.name.as_str())
    }

    /// Embeds `texts` behind the model's prompt `name` (E5's `"query: "`,
    /// BGE's query instruction), as sentence-transformers'
    /// `encode(texts, prompt_name=name)` does: a shorthand for
    /// [`embed_with`](Embedder::embed_with) and
    /// [`EmbedOptions::with_prompt_name`] (which a
    /// [`BatchEmbedder`](crate::BatchEmbedder) and an
    /// [`EmbedService`](crate::EmbedService) take too).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the model has no prompt of that name;
    /// otherwise as [`Embedder::embed`].
    pub fn embed_with_prompt(&self, name: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_with(texts, &EmbedOptions::new().with_prompt_name(name))
    }

    /// The number of compute threads, when a dedicated pool was requested.
    pub fn threads(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.current_num_threads())
    }

    /// A counter of content tokens as this model's tokenizer splits a text:
    /// no special tokens, no truncation. What a chunker sizes chunks by, so
    /// that a chunk of `max_seq_length - 2` counted tokens fits the model
    /// whole.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`] when the tokenizer's truncation cannot be
    /// switched off.
    pub fn token_counter(&self) -> Result<TokenCounter> {
        TokenCounter::untruncated(&self.tokenizer)
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_on(self.pool.as_deref(), f)
    }

    /// Each text behind `prompt` (or none) as the model sees it.
    fn tokenize_behind(
        &self,
        texts: &[&str],
        prompt: Option<&ActivePrompt>,
    ) -> Result<Vec<Tokens>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|| encode(&self.tokenizer, texts, prompt))
    }

    /// Runs the encoder and pools each text, leaving out the leading tokens
    /// its prompt keeps out of pooling (from every pooling but CLS).
    fn forward(&self, texts: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        let batch = Packed::new(texts.iter().map(|t| t.ids()));
        check_room(&*self.probe, self.encoder.cost_prior(), &batch)?;
        let width = self.encoder.hidden_size();
        let mut pooled = Vec::with_capacity(texts.len());
        self.encoder
            .forward_each(&batch, &*self.probe, |i, states| {
                let len = states.len() / width;
                let skip = match self.settings.pooling {
                    Pooling::Cls => 0,
                    _ => texts[i].pooling_skip().min(len),
                };
                let mut v = self.settings.pooling.apply(&states[skip * width..], width);
                if let Some(n) = self.settings.dimensions {
                    v.truncate(n);
                }
                if self.settings.normalize {
                    l2_normalize(&mut v);
                }
                pooled.push(v);
            })?;
        Ok(pooled)
    }
}

/// A packed forward pass's error as the caller sees it: buffers the system
/// refused (an anonymous mapping under `ulimit -v` or strict overcommit;
/// under a cgroup limit the mapping succeeds and the limit acts as pages
/// are written, which the last look below guards) are
/// [`Error::MemoryPressure`], so the caller halves the batch and retries;
/// anything else is [`Error::Inference`].
fn forward_error(e: encoder::ForwardError, probe: &dyn MemoryProbe) -> Error {
    match e {
        encoder::ForwardError::NoMemory { bytes, reason } => {
            let free = probe.snapshot().free_bytes();
            tracing::warn!(bytes, free, %reason, "the system refused the batch's buffers");
            Error::MemoryPressure {
                needed: bytes,
                available: free,
                level: PressureLevel::Critical,
            }
        }
        e => Error::Inference(boxed(e)),
    }
}

/// Refuses a batch whose buffers cannot fit in the memory free under the
/// process's limit right now, with [`Error::MemoryPressure`]: the caller
/// halves it and retries (the [`Embedder::embed_tokens`] contract). A batcher plans
/// within its budget, but the limit can change under a running process (an
/// operator lowering a container's limit, a neighbour in the same cgroup):
/// this is the last look before the buffers are written, a few microseconds
/// later.
fn check_room(probe: &dyn MemoryProbe, prior: CostPrior, batch: &Packed) -> Result<()> {
    let needed = prior.bytes_for_lengths(batch.spans().map(|(_, len)| len));
    let free = probe.snapshot().free_bytes();
    if needed > free {
        tracing::warn!(
            needed,
            free,
            "the batch does not fit under the memory limit now"
        );
        return Err(Error::MemoryPressure {
            needed,
            available: free,
            level: PressureLevel::Critical,
        });
    }
    Ok(())
}

impl BertEmbedder {
    /// Loads the model a [`ModelConfig`] describes, admitted under a
    /// budget of [`MemoryConfig`](crate::memory::MemoryConfig)'s defaults
    /// (70% of the limit). To load under the budget the batches use, give
    /// the builder that budget ([`BertEmbedderBuilder::budget`]), or use
    /// `BatchEmbedder::load`.
    ///
    /// # Errors
    ///
    /// As [`BertEmbedderBuilder::build`].
    pub fn from_config(config: &ModelConfig) -> Result<Self> {
        BertEmbedderBuilder::from(config.clone()).build()
    }
}

impl Embedder for BertEmbedder {
    /// The model's width, `max_seq_length` and shape; what the packed
    /// forward pass holds per token and per token pair (see the encoder's
    /// buffers); the packed weights as held (int8 weights count their int8
    /// bytes and scales); and whether the tokenizer splits words as BERT's
    /// does (see [`ModelInfo::word_by_word`]).
    fn info(&self) -> ModelInfo {
        self.info
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        self.tokenize_behind(texts, self.prompt.as_ref())
    }

    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|| self.forward(batch))
    }

    fn prompt_names(&self) -> Vec<String> {
        self.prompts.names()
    }

    fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
        let prompt = prompt.map(|name| self.prompts.active(name)).transpose()?;
        self.tokenize_behind(texts, prompt)
    }
}

/// Runs `f` on the dedicated thread pool, if any, so that candle's and the
/// tokenizer's rayon work stays within it.
fn run_on<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Tokenizes `texts` (with special tokens, truncated as the tokenizer is
/// set), each behind `prompt` when one is given: what the model sees.
fn encode(
    tokenizer: &Tokenizer,
    texts: &[&str],
    prompt: Option<&ActivePrompt>,
) -> Result<Vec<Tokens>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let encoded = match prompt {
        Some(p) => tokenizer.encode_batch(
            texts
                .iter()
                .map(|t| format!("{}{t}", p.text))
                .collect::<Vec<_>>(),
            true,
        ),
        None => tokenizer.encode_batch(texts.to_vec(), true),
    };
    let encoded = encoded.map_err(|e| Error::Tokenization(BoxError::from(e)))?;
    let skip = prompt.map_or(0, |p| p.skip);
    Ok(encoded
        .into_iter()
        .map(|e| tokens_of(e).with_pooling_skip(skip))
        .collect())
}

/// What membatch keeps of a tokenizer's encoding: the ids, the segment
/// ids, and whether truncation cut it (it keeps what it cut as
/// overflowing parts).
fn tokens_of(encoding: tokenizers::Encoding) -> Tokens {
    let truncated = !encoding.get_overflowing().is_empty();
    Tokens::new(encoding.get_ids().to_vec())
        .with_type_ids(encoding.get_type_ids().to_vec())
        .truncated(truncated)
}

/// Whether `tokenizer` splits words as BERT's pre-tokenizer does (see
/// [`ModelInfo::word_by_word`]): BERT's normaliser and pre-tokenizer
/// (BERT's and MPNet's tokenizers) make every whitespace run, punctuation
/// mark and CJK character a word boundary, WordPiece works word by word,
/// and truncation keeps the first tokens. Other tokenizers (SentencePiece's
/// Metaspace, byte-level BPE) may merge across punctuation.
fn word_by_word(tokenizer: &Tokenizer) -> bool {
    matches!(
        tokenizer.get_pre_tokenizer(),
        Some(tokenizers::PreTokenizerWrapper::BertPreTokenizer(_))
    )
}

/// The forward pass a model runs on: membatch's packed pass for the
/// families it implements, candle-transformers' model for the others.
#[derive(Debug)]
enum Backbone {
    Packed(Encoder),
    Candle(CandleEncoder),
}

impl Backbone {
    /// The last hidden states of `batch`, handed to `each` a sequence at a
    /// time as `(index, states)` in batch order (see
    /// [`Encoder::forward_each`]; candle's models run the whole batch
    /// first).
    fn forward_each(
        &self,
        batch: &Packed,
        probe: &dyn MemoryProbe,
        mut each: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        match self {
            Backbone::Packed(e) => e
                .forward_each(batch, each)
                .map_err(|e| forward_error(e, probe)),
            Backbone::Candle(e) => {
                let hidden = e.forward(batch).map_err(|e| Error::Inference(boxed(e)))?;
                let h = self.hidden_size();
                for (i, (start, len)) in batch.spans().enumerate() {
                    each(i, &hidden[start * h..(start + len) * h]);
                }
                Ok(())
            }
        }
    }

    fn hidden_size(&self) -> usize {
        match self {
            Backbone::Packed(e) => e.hidden_size(),
            Backbone::Candle(e) => e.hidden_size(),
        }
    }

    fn cost_prior(&self) -> CostPrior {
        match self {
            Backbone::Packed(e) => e.cost_prior(),
            Backbone::Candle(e) => e.cost_prior(),
        }
    }

    fn weight_bytes(&self) -> usize {
        match self {
            Backbone::Packed(e) => e.weight_bytes(),
            Backbone::Candle(e) => e.weight_bytes(),
        }
    }
}

/// The cost prior of a model before it is loaded.
fn cost_prior_of(config: &BertConfig) -> CostPrior {
    if config.family.is_packed() {
        encoder::cost_prior(config.hidden_size, config.intermediate_size)
    } else {
        candle_models::cost_prior(config)
    }
}

/// Counts a text's content tokens as a model's tokenizer splits it: no
/// special tokens, no truncation. From [`BertEmbedder::token_counter`].
#[derive(Clone)]
pub struct TokenCounter {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter").finish_non_exhaustive()
    }
}

impl TokenCounter {
    /// A counter over a copy of `tokenizer` without truncation or padding.
    fn untruncated(tokenizer: &Tokenizer) -> Result<Self> {
        let mut tokenizer = tokenizer.clone();
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
        tokenizer.with_padding(None);
        Ok(TokenCounter { tokenizer })
    }

    /// The number of tokens `text` becomes, without `[CLS]`/`[SEP]`.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`] when the tokenizer fails on the text.
    pub fn count(&self, text: &str) -> Result<usize> {
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
        Ok(encoding.get_ids().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoder::ForwardError;

    #[test]
    fn refused_buffers_are_memory_pressure_and_other_failures_inference() {
        let probe = crate::memory::SystemProbe::new();
        let refused = ForwardError::NoMemory {
            bytes: 12 << 20,
            reason: "Cannot allocate memory (os error 12)".into(),
        };
        match forward_error(refused, &probe) {
            Error::MemoryPressure { needed, level, .. } => {
                assert_eq!(needed, 12 << 20);
                assert_eq!(level, PressureLevel::Critical);
            }
            other => panic!("expected MemoryPressure, got {other:?}"),
        }
        let unreadable = ForwardError::WeightsUnreadable("truncated".into());
        assert!(matches!(
            forward_error(unreadable, &probe),
            Error::Inference(_)
        ));
    }
}
