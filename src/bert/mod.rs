//! [`BertEmbedder`]: BERT-family sentence embedders on candle's CPU backend.
//!
//! It reproduces sentence-transformers' output for models such as
//! all-MiniLM-L6-v2: the same tokenisation (truncated at the model's
//! `max_seq_length`, padded to the longest text of the batch), the same
//! pooling over the attention mask and the same normalisation, as the model's
//! own sentence-transformers files configure them.

mod builder;
mod candle_models;
mod encoder;
mod lazy;
mod load;
mod metadata;
mod pooling;
mod rerank;

use std::collections::BTreeMap;

use tokenizers::Tokenizer;

use crate::config::ModelConfig;
use crate::embedder::{CostPrior, Embedder, ModelShape};
use crate::error::{boxed, BoxError, Error, Result};
use crate::memory::{MemoryProbe, SystemProbe};
use crate::precision::Precision;
use crate::pressure::PressureLevel;
use crate::source::ModelSource;
pub use builder::BertEmbedderBuilder;

/// The forward pass's dense product, for membatch's own criterion benches
/// (`benches/benchmarks/gemm.rs`). Not part of the API: it may change or go
/// in any release.
#[doc(hidden)]
pub mod bench_kernels {
    use super::encoder::dense::PackedWeights;

    /// An `outputs × inputs` weight with its bias, packed once.
    #[derive(Debug)]
    pub struct Dense(PackedWeights);

    impl Dense {
        /// Packs `weight` (`outputs × inputs`, row-major) and `bias`.
        pub fn new(weight: &[f32], bias: &[f32], inputs: usize) -> Self {
            Dense(PackedWeights::new(weight, bias, inputs))
        }

        /// `out = x·Wᵀ + b` with membatch's packed kernel (the fastest
        /// this CPU runs).
        pub fn forward(&self, x: &[f32], out: &mut [f32]) {
            self.0.forward(x, out, false)
        }

        /// The kernels this CPU runs other than the fastest, by name
        /// (`"generic"`, `"avx2"`): the benches' comparison rows.
        pub fn slower_kernels() -> Vec<&'static str> {
            let fastest = super::encoder::dense::kernel_for_this_cpu();
            super::encoder::dense::Kernel::available()
                .into_iter()
                .filter(|k| *k != fastest)
                .map(kernel_name)
                .collect()
        }

        /// [`Dense::forward`] on the kernel named `kernel` (one of
        /// [`Dense::slower_kernels`] or the fastest's name); `false`, with
        /// `out` untouched, for a name this CPU does not run.
        pub fn forward_on(&self, kernel: &str, x: &[f32], out: &mut [f32]) -> bool {
            let found = super::encoder::dense::Kernel::available()
                .into_iter()
                .find(|k| kernel_name(*k) == kernel);
            match found {
                Some(k) => {
                    self.0.forward_with(x, out, false, k);
                    true
                }
                None => false,
            }
        }
    }

    fn kernel_name(kernel: super::encoder::dense::Kernel) -> &'static str {
        use super::encoder::dense::Kernel;
        match kernel {
            Kernel::Generic => "generic",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512",
        }
    }

    /// The same product with int8 weights (per output column) and 8-bit
    /// activations (per row) on a VNNI kernel.
    #[derive(Debug)]
    pub struct DenseInt8(
        super::encoder::dense_i8::Int8Panels,
        super::encoder::dense_i8::Int8Kernel,
    );

    impl DenseInt8 {
        /// Quantises and packs `weight` and `bias`; `None` where the CPU
        /// has no VNNI.
        pub fn new(weight: &[f32], bias: &[f32], inputs: usize) -> Option<Self> {
            let kernel = super::encoder::dense_i8::Int8Kernel::vnni()?;
            Some(DenseInt8(
                super::encoder::dense_i8::Int8Panels::new(weight, bias, inputs),
                kernel,
            ))
        }

        /// `out = x·Wᵀ + b`, `x` quantised per row as it starts.
        pub fn forward(&self, x: &[f32], out: &mut [f32]) {
            let mut scratch = Default::default();
            self.0.forward(x, out, false, &mut scratch, self.1)
        }
    }

    /// Self-attention of packed sequences (`lengths` one after another):
    /// `qkv` is `tokens × 3h`, `context` receives `tokens × h`. With
    /// `gemm_crate`, the products run through the `gemm` crate as they did
    /// before membatch's own kernel ran them (the baseline).
    pub fn attention(
        qkv: &[f32],
        context: &mut [f32],
        lengths: &[usize],
        heads: usize,
        h: usize,
        gemm_crate: bool,
    ) {
        use super::encoder::attention::{attend, Products};
        let mut start = 0;
        let spans: Vec<(usize, usize)> = lengths
            .iter()
            .map(|&len| {
                start += len;
                (start - len, len)
            })
            .collect();
        let products = if gemm_crate {
            Products::GemmCrate
        } else {
            Products::fastest()
        };
        attend(qkv, context, &spans, heads, h, None, products)
    }

    /// `out = x·Wᵀ + b` through the `gemm` crate on the unpacked weight,
    /// as the forward pass ran before its own kernel (the baseline).
    pub fn gemm_crate(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
        super::encoder::gemm_crate_product(x, weight, bias, out)
    }
}
use candle_models::CandleEncoder;
use encoder::{BertConfig, Encoder, Packed};
pub use lazy::BertLoader;
pub use pooling::Pooling;
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
    encoder: Backbone,
    tokenizer: Tokenizer,
    settings: OutputSettings,
    prompts: Prompts,
    /// The prompt put before every text, when one was chosen.
    prompt: Option<ActivePrompt>,
    dimension: usize,
    shape: ModelShape,
    pool: Option<rayon::ThreadPool>,
    /// Reads the memory free under the limit before each batch.
    probe: SystemProbe,
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
    /// `encode(texts, prompt_name=name)` does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the model has no prompt of that name;
    /// otherwise as [`Embedder::embed`].
    pub fn embed_with_prompt(&self, name: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.with_prompt(name)?.embed(texts)
    }

    /// This embedder behind the model's prompt `name`, as an [`Embedder`]
    /// whose token counts include the prompt, so a
    /// [`BatchEmbedder`](crate::BatchEmbedder) budgets prompted texts
    /// truly.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the model has no prompt of that name.
    pub fn with_prompt(&self, name: &str) -> Result<Prompted<'_>> {
        let prompt = self.prompts.active(name, &self.tokenizer)?;
        Ok(Prompted {
            embedder: self,
            prompt,
        })
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
        let encodings = self.run(|| self.encode(texts, self.prompt.as_ref()))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_on(self.pool.as_ref(), f)
    }

    fn encode(
        &self,
        texts: &[&str],
        prompt: Option<&ActivePrompt>,
    ) -> Result<Vec<tokenizers::Encoding>> {
        encode(&self.tokenizer, texts, prompt)
    }

    /// Embeds behind `prompt` (or none): the whole path of [`Embedder::embed`].
    fn embed_prompted(
        &self,
        texts: &[&str],
        prompt: Option<&ActivePrompt>,
    ) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|| {
            let encodings = self.encode(texts, prompt)?;
            self.forward(&encodings, prompt.map_or(0, |p| p.skip))
        })
    }

    fn token_counts_prompted(
        &self,
        texts: &[&str],
        prompt: Option<&ActivePrompt>,
    ) -> Result<Vec<usize>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|| {
            Ok(self
                .encode(texts, prompt)?
                .iter()
                .map(|e| e.len())
                .collect())
        })
    }

    /// Runs the encoder and pools each text, leaving out its first `skip`
    /// tokens (a prompt the model pools without) from every pooling but CLS.
    fn forward(&self, encodings: &[tokenizers::Encoding], skip: usize) -> Result<Vec<Vec<f32>>> {
        let batch = Packed::new(encodings.iter().map(|e| e.get_ids()));
        check_room(&self.probe, self.encoder.cost_prior(), &batch)?;
        let width = self.encoder.hidden_size();
        let mut pooled = Vec::with_capacity(encodings.len());
        self.encoder
            .forward_each(&batch, &self.probe, |_, states| {
                let len = states.len() / width;
                let skip = match self.settings.pooling {
                    Pooling::Cls => 0,
                    _ => skip.min(len),
                };
                let mut v = self.settings.pooling.apply(&states[skip * width..], width);
                if self.settings.normalize {
                    pooling::l2_normalize(&mut v);
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
fn forward_error(e: encoder::ForwardError, probe: &SystemProbe) -> Error {
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
/// halves it and retries (the [`Embedder::embed`] contract). A batcher plans
/// within its budget, but the limit can change under a running process (an
/// operator lowering a container's limit, a neighbour in the same cgroup):
/// this is the last look before the buffers are written, a few microseconds
/// later.
fn check_room(probe: &SystemProbe, prior: CostPrior, batch: &Packed) -> Result<()> {
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
    /// Loads the model a [`ModelConfig`] describes.
    ///
    /// # Errors
    ///
    /// As [`BertEmbedderBuilder::build`].
    pub fn from_config(config: &ModelConfig) -> Result<Self> {
        BertEmbedderBuilder::from(config.clone()).build()
    }
}

impl Embedder for BertEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_prompted(texts, self.prompt.as_ref())
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_seq_length(&self) -> usize {
        self.settings.max_seq_length
    }

    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        self.token_counts_prompted(texts, self.prompt.as_ref())
    }

    fn shape(&self) -> Option<ModelShape> {
        Some(self.shape)
    }

    /// What the packed forward pass holds per token and per token pair (see
    /// the encoder's buffers).
    fn cost_prior(&self) -> Option<CostPrior> {
        Some(self.encoder.cost_prior())
    }

    /// The packed weights as held for the forward pass (int8 weights count
    /// their int8 bytes and scales).
    fn weight_bytes(&self) -> Option<u64> {
        Some(self.encoder.weight_bytes() as u64)
    }

    /// BERT's normaliser and pre-tokenizer (BERT's and MPNet's tokenizers)
    /// make every whitespace run, punctuation mark and CJK character a word
    /// boundary, WordPiece works word by word, and truncation keeps the
    /// first tokens. Other tokenizers (SentencePiece's Metaspace, byte-level
    /// BPE) may merge across punctuation: `false` for them.
    fn tokenizes_word_by_word(&self) -> bool {
        word_by_word(&self.tokenizer)
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

/// Tokenises `texts` (with special tokens, truncated as the tokenizer is
/// set), each behind `prompt` when one is given: what the model sees, and
/// what token counts count.
fn encode(
    tokenizer: &Tokenizer,
    texts: &[&str],
    prompt: Option<&ActivePrompt>,
) -> Result<Vec<tokenizers::Encoding>> {
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
    encoded.map_err(|e| Error::Tokenization(BoxError::from(e)))
}

/// Whether `tokenizer` splits words as BERT's pre-tokenizer does (see
/// [`Embedder::tokenizes_word_by_word`]).
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
        probe: &SystemProbe,
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

/// A model's named prompts and how they are pooled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prompts {
    texts: BTreeMap<String, String>,
    /// The pooling config's `include_prompt`.
    include_prompt: bool,
}

impl Prompts {
    /// The prompt `name`, ready to put before texts.
    fn active(&self, name: &str, tokenizer: &Tokenizer) -> Result<ActivePrompt> {
        let Some(text) = self.texts.get(name) else {
            let known: Vec<&str> = self.texts.keys().map(String::as_str).collect();
            return Err(Error::invalid_config(
                "prompt_name",
                name,
                if known.is_empty() {
                    "the model defines no prompts (config_sentence_transformers.json)".to_string()
                } else {
                    format!("the model's prompts are: {}", known.join(", "))
                },
            ));
        };
        // Without include_prompt, sentence-transformers leaves the prompt's
        // tokens out of pooling: as many leading tokens as the prompt alone
        // has, less its end token.
        let skip = if self.include_prompt || text.is_empty() {
            0
        } else {
            let alone = tokenizer
                .encode(text.as_str(), true)
                .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
            alone.len().saturating_sub(1)
        };
        Ok(ActivePrompt {
            name: name.to_string(),
            text: text.clone(),
            skip,
        })
    }
}

/// A prompt in force.
#[derive(Debug, Clone)]
pub(crate) struct ActivePrompt {
    name: String,
    text: String,
    /// Leading tokens left out of pooling.
    skip: usize,
}

/// A [`BertEmbedder`] behind one of its model's prompts, from
/// [`BertEmbedder::with_prompt`]: every text is embedded and counted with
/// the prompt before it.
#[derive(Debug, Clone)]
pub struct Prompted<'a> {
    embedder: &'a BertEmbedder,
    prompt: ActivePrompt,
}

impl Embedder for Prompted<'_> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embedder.embed_prompted(texts, Some(&self.prompt))
    }

    fn dimension(&self) -> usize {
        self.embedder.dimension
    }

    fn max_seq_length(&self) -> usize {
        self.embedder.settings.max_seq_length
    }

    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        self.embedder
            .token_counts_prompted(texts, Some(&self.prompt))
    }

    fn shape(&self) -> Option<ModelShape> {
        self.embedder.shape()
    }

    fn cost_prior(&self) -> Option<CostPrior> {
        self.embedder.cost_prior()
    }

    fn weight_bytes(&self) -> Option<u64> {
        self.embedder.weight_bytes()
    }

    fn tokenizes_word_by_word(&self) -> bool {
        self.embedder.tokenizes_word_by_word()
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
        let probe = SystemProbe::new();
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
