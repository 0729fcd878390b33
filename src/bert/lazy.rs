//! [`BertLoader`]: a BERT model read up to its weights, which it loads on
//! demand for a [`LazyEmbedder`](crate::LazyEmbedder).

use tokenizers::Tokenizer;

use super::builder::{BertEmbedderBuilder, Prepared};
use super::prompts::ActivePrompt;
use super::{cost_prior_of, encode, word_by_word};
use super::{BertEmbedder, TokenCounter};
use crate::embedder::{CostPrior, ModelShape};
use crate::embedder::{LazyEmbedder, ModelLoader};
use crate::error::Result;

// Here rather than in `builder`, so the dependency runs lazy → builder.
impl BertEmbedderBuilder {
    /// A [`LazyEmbedder`] over this model: the configuration and tokenizer
    /// are read (and checked) now, so token counts, the dimension and the
    /// cost prior are known at once; the weights are loaded on the first
    /// embed and can be unloaded and loaded again.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), except for what loading the weights finds
    /// (reported by the first embed instead).
    pub fn build_lazy(self) -> Result<LazyEmbedder<BertLoader>> {
        let prepared = self.prepare()?;
        Ok(LazyEmbedder::new(BertLoader::new(self, prepared)))
    }
}

/// What a lazily loaded [`BertEmbedder`] knows before its weights are in
/// memory (its configuration and tokenizer, a few MB), and how to load
/// them. From [`BertEmbedderBuilder::build_lazy`].
pub struct BertLoader {
    builder: BertEmbedderBuilder,
    tokenizer: Tokenizer,
    dimension: usize,
    max_seq_length: usize,
    shape: ModelShape,
    cost_prior: CostPrior,
    /// The prompt every text gets, counted in token counts as the loaded
    /// embedder counts it.
    prompt: Option<ActivePrompt>,
}

impl std::fmt::Debug for BertLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertLoader")
            .field("model", self.builder.config())
            .field("dimension", &self.dimension)
            .field("max_seq_length", &self.max_seq_length)
            .finish_non_exhaustive()
    }
}

impl BertLoader {
    pub(super) fn new(builder: BertEmbedderBuilder, prepared: Prepared) -> Self {
        let c = &prepared.config;
        BertLoader {
            dimension: c.hidden_size,
            max_seq_length: prepared.settings.max_seq_length,
            shape: prepared.shape(),
            cost_prior: cost_prior_of(c),
            prompt: prepared.prompt,
            tokenizer: prepared.tokenizer,
            builder,
        }
    }
}

impl BertLoader {
    /// A counter of content tokens without truncation (see
    /// [`BertEmbedder::token_counter`]): whether a text fits the model
    /// whole, without loading the weights.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`](crate::Error::Tokenization) when truncation cannot be switched off.
    pub fn token_counter(&self) -> Result<TokenCounter> {
        TokenCounter::untruncated(&self.tokenizer)
    }
}

impl ModelLoader for BertLoader {
    type Model = BertEmbedder;

    /// Reads the model's files again (they may have changed on disk since)
    /// and its weights, after checking they fit.
    fn load(&self) -> Result<BertEmbedder> {
        let prepared = self.builder.prepare()?;
        self.builder.load_prepared(prepared)
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        let encodings = encode(&self.tokenizer, texts, self.prompt.as_ref())?;
        Ok(encodings.iter().map(|e| e.len()).collect())
    }

    fn shape(&self) -> Option<ModelShape> {
        Some(self.shape)
    }

    fn cost_prior(&self) -> Option<CostPrior> {
        Some(self.cost_prior)
    }

    fn tokenizes_word_by_word(&self) -> bool {
        word_by_word(&self.tokenizer)
    }
}
