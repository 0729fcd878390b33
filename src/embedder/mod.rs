//! The [`Embedder`] trait: what any embedding backend offers to membatch.

use std::sync::Arc;

use crate::error::{Error, Result};

mod lazy;
mod options;
mod reranker;
pub use lazy::{LazyEmbedder, ModelLoader};
// The BERT backend's pooling normalises with the same function.
#[cfg(feature = "candle")]
pub(crate) use options::l2_normalize;
pub(crate) use options::{truncate_dimensions, unknown_prompt, WithOptions};
pub use options::{EmbedOptions, Prompt, Truncation};
pub use reranker::Reranker;

/// A text-embedding backend.
///
/// The trait is object-safe and `Send + Sync`, so a service can hold an
/// `Arc<dyn Embedder>` and share it between threads. It is deliberately
/// small: a text is tokenized once ([`tokenize`](Embedder::tokenize), cheap:
/// a batcher counts and orders texts by their tokens), then batches of
/// tokenized texts run through the model
/// ([`embed_tokens`](Embedder::embed_tokens), the expensive call); what a
/// batcher needs to know about the model to plan is one value,
/// [`info`](Embedder::info), which a wrapper passes on whole.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use membatch::{Embedder, ModelInfo, Result, Tokens};
///
/// /// A toy backend: one token per byte, one dimension, the token count.
/// struct Length;
///
/// impl Embedder for Length {
///     fn info(&self) -> ModelInfo {
///         ModelInfo::new(1, usize::MAX)
///     }
///     fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
///         Ok(texts.iter().map(|t| Tokens::new(t.bytes().map(u32::from).collect())).collect())
///     }
///     fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
///         Ok(batch.iter().map(|t| vec![t.len() as f32]).collect())
///     }
/// }
///
/// let shared: Arc<dyn Embedder> = Arc::new(Length);
/// assert_eq!(shared.embed(&["abc"])?, vec![vec![3.0]]);
/// # Ok::<(), membatch::Error>(())
/// ```
pub trait Embedder: Send + Sync {
    /// What a batcher plans with: the output width, the longest text the
    /// model reads, the cost of a batch, … (see [`ModelInfo`]). Cheap: it
    /// is asked before every run.
    fn info(&self) -> ModelInfo;

    /// Each text as the model sees it: its token ids, special tokens
    /// included, truncated to [`ModelInfo::max_seq_length`]. One entry per
    /// text, in order; an empty slice returns an empty vector. A text that
    /// truncation cut must be marked ([`Tokens::truncated`]): refusing
    /// long texts ([`Truncation::Refuse`](crate::Truncation::Refuse))
    /// and cutting huge ones to a bounded prefix rely on it.
    ///
    /// Tokenization is cheap next to a forward pass, so a batcher
    /// tokenizes first, sorts texts by length and predicts a batch's cost
    /// before running it; the tokens it keeps are what
    /// [`embed_tokens`](Embedder::embed_tokens) runs, so no text is
    /// tokenized twice.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`](crate::Error::Tokenization) when the tokenizer fails.
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>>;

    /// Embeds a batch of tokenized texts (from this embedder's
    /// [`tokenize`](Embedder::tokenize)), one vector of
    /// [`ModelInfo::dimension`] floats per text, in order.
    ///
    /// This is the expensive call: the whole slice is run as one batch, so
    /// its memory cost grows with the number of texts and their length.
    /// Splitting a large input into batches that fit is the caller's job
    /// (or the batcher's). An empty slice returns an empty vector.
    ///
    /// # Contract
    ///
    /// - exactly one vector per text, in order, each of
    ///   [`ModelInfo::dimension`] floats (a batcher checks the count and
    ///   reports [`Error::EmbedderContract`](crate::Error::EmbedderContract)
    ///   otherwise);
    /// - a text's vector does not depend on the other texts of the batch;
    /// - when the backend finds it cannot get the memory this batch needs
    ///   (an allocation it checks, a device limit), it returns
    ///   [`Error::MemoryPressure`](crate::Error::MemoryPressure) instead of
    ///   failing otherwise: [`BatchEmbedder`](crate::BatchEmbedder) then
    ///   halves the batch and runs the same texts again, smaller. Any other
    ///   error ends the run.
    ///
    /// # Errors
    ///
    /// [`Error::Inference`](crate::Error::Inference) when the backend fails;
    /// [`Error::MemoryPressure`](crate::Error::MemoryPressure) to be retried
    /// smaller.
    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>>;

    /// Tokenizes `texts` and embeds them as one batch: one vector per
    /// text, in order. A convenience over [`tokenize`](Embedder::tokenize)
    /// and [`embed_tokens`](Embedder::embed_tokens); to embed more texts
    /// than fit in memory at once, use a
    /// [`BatchEmbedder`](crate::BatchEmbedder).
    ///
    /// # Errors
    ///
    /// As [`tokenize`](Embedder::tokenize) and
    /// [`embed_tokens`](Embedder::embed_tokens).
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let tokens = self.tokenize(texts)?;
        self.embed_tokens(&tokens.iter().collect::<Vec<_>>())
    }

    /// Embeds `texts` as `options` say (a prompt, fewer dimensions,
    /// refusing long texts) as one batch: one vector per text, in order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an
    /// unknown prompt or dimensions the model does not have;
    /// [`Error::TextTooLong`](crate::Error::TextTooLong) when the options
    /// refuse a long text; otherwise as [`embed`](Embedder::embed).
    fn embed_with(&self, texts: &[&str], options: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
        options.check(self)?;
        let tokens = options.tokenize(self, texts)?;
        let mut vectors = self.embed_tokens(&tokens.iter().collect::<Vec<_>>())?;
        options.shape(&self.info(), &mut vectors);
        Ok(vectors)
    }

    /// The names of the model's prompts (`prompts` in
    /// `config_sentence_transformers.json`): what
    /// [`tokenize_prompted`](Embedder::tokenize_prompted) and
    /// [`EmbedOptions::prompt`] may name. Default: none.
    fn prompt_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// As [`tokenize`](Embedder::tokenize), with the model's prompt
    /// `prompt` before each text, or with no prompt at all for `None`
    /// (whatever prompt [`tokenize`](Embedder::tokenize) puts by
    /// default). The tokens say how many of their first tokens pooling
    /// leaves out ([`Tokens::pooling_skip`]), so texts behind different
    /// prompts can share a batch.
    ///
    /// The default, for a backend without prompts: `None` tokenizes as
    /// [`tokenize`](Embedder::tokenize), a name is an error. A backend whose
    /// [`tokenize`](Embedder::tokenize) puts a prompt by default overrides
    /// it, so that `None` means no prompt.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming
    /// `prompt_name` and listing the model's prompts, for a name the model
    /// does not define; otherwise as [`tokenize`](Embedder::tokenize).
    fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
        match prompt {
            None => self.tokenize(texts),
            Some(name) => Err(unknown_prompt(name, &self.prompt_names())),
        }
    }

    /// Whether the model's weights are in memory. Default
    /// [`ModelState::Loaded`]: an embedder that exists holds its model; a
    /// lazily loaded one ([`LazyEmbedder`]) says when it does not.
    fn state(&self) -> ModelState {
        ModelState::Loaded
    }

    /// Frees what the embedder can load again on its next
    /// [`embed_tokens`](Embedder::embed_tokens) (its weights); returns
    /// whether anything was freed. Default: nothing to free, `false`.
    fn unload(&self) -> bool {
        false
    }

    /// Loads what [`unload`](Embedder::unload) freed (or a lazy model's
    /// weights before its first batch), now rather than inside the next
    /// [`embed_tokens`](Embedder::embed_tokens). A batcher calls it before
    /// it plans a batch, so the plan sees the loaded weights in memory and
    /// the load is admitted on its own. Default: nothing to load, `Ok`.
    ///
    /// # Errors
    ///
    /// The load's, e.g. [`Error::ModelTooLarge`](crate::Error::ModelTooLarge).
    fn ensure_loaded(&self) -> Result<()> {
        Ok(())
    }
}

/// One text as a model sees it: its token ids (special tokens included,
/// after truncation), their segment ids when the model uses them (the two
/// texts of a cross-encoder's pair), and whether truncation cut it.
///
/// Made by a backend's [`Embedder::tokenize`] (or
/// [`Reranker::tokenize_pairs`]) and run by the same backend: the ids
/// belong to its tokenizer. 4 bytes per token (8 with segment ids).
///
/// ```
/// use membatch::Tokens;
/// let t = Tokens::new(vec![101, 7592, 102]).truncated(true);
/// assert_eq!((t.len(), t.is_truncated()), (3, true));
/// assert_eq!(t.type_ids(), None, "one segment");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tokens {
    ids: Vec<u32>,
    /// Empty when every token is in segment 0.
    type_ids: Vec<u32>,
    truncated: bool,
    /// Leading tokens (a prompt) that pooling leaves out.
    pooling_skip: usize,
}

impl Tokens {
    /// A text of these token ids, one segment, not truncated.
    pub fn new(ids: Vec<u32>) -> Self {
        Tokens {
            ids,
            type_ids: Vec::new(),
            truncated: false,
            pooling_skip: 0,
        }
    }

    /// These tokens with their segment ids (as many as the ids; kept only
    /// when one is not 0).
    ///
    /// # Panics
    ///
    /// When `type_ids` and the ids differ in length: a backend's bug.
    #[must_use]
    pub fn with_type_ids(mut self, type_ids: Vec<u32>) -> Self {
        assert_eq!(type_ids.len(), self.ids.len(), "one segment id per token");
        self.type_ids = if type_ids.iter().all(|&t| t == 0) {
            Vec::new()
        } else {
            type_ids
        };
        self
    }

    /// These tokens, marked as cut by truncation (or not).
    #[must_use]
    pub fn truncated(mut self, truncated: bool) -> Self {
        self.truncated = truncated;
        self
    }

    /// These tokens, whose first `n` are a prompt that pooling leaves out
    /// (a model whose pooling config sets `include_prompt: false`).
    #[must_use]
    pub fn with_pooling_skip(mut self, n: usize) -> Self {
        self.pooling_skip = n;
        self
    }

    /// How many leading tokens pooling leaves out (a prompt's; 0 for most
    /// models, which pool the prompt with the text).
    pub fn pooling_skip(&self) -> usize {
        self.pooling_skip
    }

    /// The token ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The segment ids, when some token is not in segment 0.
    pub fn type_ids(&self) -> Option<&[u32]> {
        (!self.type_ids.is_empty()).then_some(self.type_ids.as_slice())
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether truncation cut the text: it had more tokens than the model
    /// reads.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

/// What a backend says about its model: the facts a batcher plans with,
/// in one value that wrappers ([`LazyEmbedder`], a prompt, a server's
/// test double) pass on whole.
///
/// ```
/// use membatch::{CostPrior, ModelInfo};
/// let info = ModelInfo::new(384, 256)
///     .with_cost_prior(CostPrior::new(20_000, 24))
///     .with_weight_bytes(90 << 20)
///     .with_word_by_word(true);
/// assert_eq!((info.dimension, info.max_seq_length), (384, 256));
/// assert_eq!(info.cost_prior_or_guess(), CostPrior::new(20_000, 24));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ModelInfo {
    /// The length of each embedding vector (1 for a reranker's score).
    /// Lets a caller size output buffers and files before any text is
    /// embedded.
    pub dimension: usize,
    /// The most tokens of one text the model reads (special tokens
    /// included); longer texts are truncated. A batcher bounds a batch's
    /// length with it, which drives activation memory (and attention
    /// memory quadratically).
    pub max_seq_length: usize,
    /// The model's sizes, for reports such as a server's model
    /// information.
    pub shape: Option<ModelShape>,
    /// What a batch costs in memory, as far as the backend knows before
    /// any batch is measured: the prior a batcher plans its first batches
    /// with. `None`: the batcher assumes
    /// [`CostPrior::guess_from_dimension`] and learns the real cost from
    /// measured batches.
    pub cost_prior: Option<CostPrior>,
    /// The bytes the model's weights hold while it is loaded: what a
    /// caller reserves once for the model in a memory ledger shared with
    /// other work (a query engine's pool).
    pub weight_bytes: Option<u64>,
    /// Whether a text's first tokens depend only on its first words: the
    /// tokenizer never merges across whitespace, punctuation or CJK
    /// characters, and truncation keeps the first tokens. BERT's WordPiece
    /// does both. When `true`, a batcher hands a huge text over as a
    /// bounded prefix with the same tokens instead of having it tokenized
    /// whole.
    pub word_by_word: bool,
    /// Whether the vectors have unit length (the model normalises them):
    /// a vector cut to fewer dimensions ([`EmbedOptions::dimensions`]) is
    /// then normalised again. Default `false`: a backend that normalises
    /// says so ([`with_normalized`](Self::with_normalized)), or its cut
    /// vectors keep the length they have.
    pub normalized: bool,
}

impl ModelInfo {
    /// A model of vectors of `dimension` floats that reads up to
    /// `max_seq_length` tokens; nothing else known.
    pub fn new(dimension: usize, max_seq_length: usize) -> Self {
        ModelInfo {
            dimension,
            max_seq_length,
            shape: None,
            cost_prior: None,
            weight_bytes: None,
            word_by_word: false,
            normalized: false,
        }
    }

    /// With the model's sizes.
    #[must_use]
    pub fn with_shape(mut self, shape: ModelShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// With what a batch costs (see [`cost_prior`](Self::cost_prior)).
    #[must_use]
    pub fn with_cost_prior(mut self, prior: CostPrior) -> Self {
        self.cost_prior = Some(prior);
        self
    }

    /// With the bytes the weights hold (or `None`: not loaded, unknown).
    #[must_use]
    pub fn with_weight_bytes(mut self, bytes: impl Into<Option<u64>>) -> Self {
        self.weight_bytes = bytes.into();
        self
    }

    /// With whether the tokenizer works word by word (see
    /// [`word_by_word`](Self::word_by_word)).
    #[must_use]
    pub fn with_word_by_word(mut self, word_by_word: bool) -> Self {
        self.word_by_word = word_by_word;
        self
    }

    /// With whether the vectors have unit length (see
    /// [`normalized`](Self::normalized)).
    #[must_use]
    pub fn with_normalized(mut self, normalized: bool) -> Self {
        self.normalized = normalized;
        self
    }

    /// The cost prior, or the guess from the dimension when the backend
    /// gave none.
    pub fn cost_prior_or_guess(&self) -> CostPrior {
        self.cost_prior
            .unwrap_or_else(|| CostPrior::guess_from_dimension(self.dimension))
    }
}

/// Where a model's weights are; see [`Embedder::state`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ModelState {
    /// Not in memory; the next embed loads them.
    Unloaded,
    /// Being loaded now (one load at a time).
    Loading,
    /// In memory.
    Loaded,
    /// The last load failed with this error; the next embed tries again.
    Failed(Error),
}

impl ModelState {
    /// The lower-case name: `unloaded`, `loading`, `loaded`, `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelState::Unloaded => "unloaded",
            ModelState::Loading => "loading",
            ModelState::Loaded => "loaded",
            ModelState::Failed(_) => "failed",
        }
    }

    /// Whether the weights are in memory.
    pub fn is_loaded(&self) -> bool {
        matches!(self, ModelState::Loaded)
    }
}

impl std::fmt::Display for ModelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sizes of a transformer encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ModelShape {
    /// Width of the hidden states (`hidden_size`).
    pub hidden_size: usize,
    /// Attention heads per layer (`num_attention_heads`).
    pub num_heads: usize,
    /// Encoder layers (`num_hidden_layers`).
    pub num_layers: usize,
    /// Width of the feed-forward layer (`intermediate_size`).
    pub intermediate_size: usize,
}

impl ModelShape {
    /// A shape from its four sizes.
    pub fn new(
        hidden_size: usize,
        num_heads: usize,
        num_layers: usize,
        intermediate_size: usize,
    ) -> Self {
        ModelShape {
            hidden_size,
            num_heads,
            num_layers,
            intermediate_size,
        }
    }
}

/// The memory a backend's forward pass holds at its peak, as the backend
/// knows it before measuring: bytes per token of the batch, bytes per pair
/// of tokens within one text (attention scores grow with the square of a
/// text's length), and, for a pass that runs a batch a chunk of whole texts
/// at a time, the most tokens whose buffers it holds at once.
///
/// A batcher predicts a batch of `batch` texts of up to `length` tokens at
/// [`bytes(batch, length)`](Self::bytes) = `held·per_token +
/// held·length·per_token_pair`, where `held` is the tokens held at once
/// ([`tokens_held`](Self::tokens_held): `batch·length`, capped at the chunk
/// when there is one), then corrects the prediction from measured batches
/// ([`CostModel`](crate::batch::CostModel)).
///
/// ```
/// use membatch::CostPrior;
/// let prior = CostPrior::new(1000, 4);
/// assert_eq!(prior.bytes(2, 10), 2 * 10 * 1000 + 2 * 100 * 4);
/// // A pass that holds 32 tokens at once costs no more past them.
/// let chunked = prior.chunked(32);
/// assert_eq!(chunked.bytes(64, 10), chunked.bytes(4, 10));
/// assert_eq!(chunked.bytes(1, 100), prior.bytes(1, 100), "a long text is a chunk of its own");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CostPrior {
    /// Bytes held per token of the batch.
    pub bytes_per_token: u64,
    /// Bytes held per pair of tokens of one text.
    pub bytes_per_token_pair: u64,
    /// The most tokens whose buffers the pass holds at once, when it runs a
    /// batch a chunk of whole texts at a time (a text longer than that is
    /// a chunk of its own); `None` when it holds the whole batch at once.
    pub chunk_tokens: Option<u64>,
}

impl CostPrior {
    /// A prior from its two rates, for a pass that holds the whole batch at
    /// once.
    pub fn new(bytes_per_token: u64, bytes_per_token_pair: u64) -> Self {
        CostPrior {
            bytes_per_token,
            bytes_per_token_pair,
            chunk_tokens: None,
        }
    }

    /// This prior for a pass that holds at most `tokens` tokens' buffers at
    /// once (membatch's packed BERT pass: see `docs/memory.md`).
    pub fn chunked(self, tokens: u64) -> Self {
        CostPrior {
            chunk_tokens: Some(tokens.max(1)),
            ..self
        }
    }

    /// A guess for a transformer encoder of width `dimension` whose backend
    /// says nothing: f32 activations of five times the width (hidden
    /// states, queries, keys, values, attention output) and a feed-forward
    /// layer four times as wide, per token; one f32 attention score per
    /// pair of tokens; the whole batch at once.
    pub fn guess_from_dimension(dimension: usize) -> Self {
        let d = dimension.max(1) as u64;
        CostPrior::new(4 * (5 * d + 4 * d), 4)
    }

    /// The tokens whose buffers a batch of `batch` texts of up to `length`
    /// tokens holds at once: all `batch·length`, or at most a chunk (or
    /// one text, when it is longer than a chunk).
    pub fn tokens_held(&self, batch: usize, length: usize) -> u64 {
        let l = length as u64;
        self.held((batch as u64).saturating_mul(l), l)
    }

    /// Of `tokens` tokens whose longest text has `longest`, those held at
    /// once.
    fn held(&self, tokens: u64, longest: u64) -> u64 {
        match self.chunk_tokens {
            Some(chunk) => tokens.min(chunk.max(longest)),
            None => tokens,
        }
    }

    /// The bytes a batch of `batch` texts of up to `length` tokens holds at
    /// its peak, by this prior (saturating, never overflowing).
    pub fn bytes(&self, batch: usize, length: usize) -> u64 {
        let held = self.tokens_held(batch, length);
        let l = length as u64;
        let linear = held.saturating_mul(self.bytes_per_token);
        let pairs = held
            .saturating_mul(l)
            .saturating_mul(self.bytes_per_token_pair);
        linear.saturating_add(pairs)
    }

    /// The bytes a batch of texts of exactly `lengths` tokens holds at its
    /// peak: the tokens held at once (as [`tokens_held`](Self::tokens_held)
    /// with the longest text) and, per token held, the pairs of an average
    /// text of the batch (exact when the whole batch is held).
    pub fn bytes_for_lengths(&self, lengths: impl IntoIterator<Item = usize>) -> u64 {
        let (mut tokens, mut longest, mut pairs) = (0u64, 0u64, 0u64);
        for len in lengths {
            let len = len as u64;
            tokens = tokens.saturating_add(len);
            longest = longest.max(len);
            pairs = pairs.saturating_add(len.saturating_mul(len));
        }
        let held = self.held(tokens, longest);
        // Σlen² scaled to the share of tokens held (u128: no overflow).
        let pairs = if tokens == 0 {
            0
        } else {
            u64::try_from(pairs as u128 * held as u128 / tokens as u128).unwrap_or(u64::MAX)
        };
        held.saturating_mul(self.bytes_per_token)
            .saturating_add(pairs.saturating_mul(self.bytes_per_token_pair))
    }
}

macro_rules! forward_embedder {
    ($($ptr:ty),*) => {$(
        impl<E: Embedder + ?Sized> Embedder for $ptr {
            fn info(&self) -> ModelInfo {
                (**self).info()
            }
            fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
                (**self).tokenize(texts)
            }
            fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
                (**self).embed_tokens(batch)
            }
            fn prompt_names(&self) -> Vec<String> {
                (**self).prompt_names()
            }
            fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
                (**self).tokenize_prompted(texts, prompt)
            }
            fn state(&self) -> ModelState {
                (**self).state()
            }
            fn unload(&self) -> bool {
                (**self).unload()
            }
            fn ensure_loaded(&self) -> Result<()> {
                (**self).ensure_loaded()
            }
        }
    )*};
}

// Smart pointers to an embedder are embedders, so generic code can take
// `E: Embedder` and still be handed an `Arc<dyn Embedder>`.
forward_embedder!(&E, Box<E>, Arc<E>);

#[cfg(test)]
mod tests {
    use super::CostPrior;

    #[test]
    fn bytes_for_lengths_is_exact_for_a_whole_batch_and_capped_for_a_chunked_pass() {
        let whole = CostPrior::new(100, 4);
        let lengths = [3usize, 10, 7];
        let pairs: u64 = lengths.iter().map(|l| (l * l) as u64).sum();
        assert_eq!(whole.bytes_for_lengths(lengths), 20 * 100 + pairs * 4);
        assert_eq!(whole.bytes_for_lengths([]), 0);
        // Held at once: 12 tokens of the 20, with 12/20 of the pairs.
        let chunked = whole.chunked(12);
        assert_eq!(
            chunked.bytes_for_lengths(lengths),
            12 * 100 + pairs * 12 / 20 * 4
        );
        // A text longer than the chunk is held whole.
        assert_eq!(
            chunked.bytes_for_lengths([30, 2]),
            30 * 100 + (904 * 30 / 32) * 4
        );
        // Equal lengths: the same arithmetic as `bytes`.
        assert_eq!(chunked.bytes(4, 10), chunked.bytes_for_lengths([10; 4]));
        assert_eq!(whole.bytes(4, 10), whole.bytes_for_lengths([10; 4]));
        assert_eq!(chunked.tokens_held(4, 10), 12);
        assert_eq!(chunked.tokens_held(4, 2), 8);
        assert_eq!(
            whole.tokens_held(usize::MAX, usize::MAX),
            u64::MAX,
            "saturates"
        );
    }
}
