//! [`BertLoader`]: a BERT model read up to its weights, which it loads on
//! demand for a [`LazyEmbedder`](crate::LazyEmbedder).

use std::sync::Arc;

use super::builder::{BertEmbedderBuilder, Prepared};
use super::BertEmbedder;
use super::{encode, run_on};
use crate::embedder::{LazyEmbedder, ModelLoader};
use crate::embedder::{ModelInfo, Tokens};
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
        let pool = self.thread_pool()?;
        Ok(LazyEmbedder::new(BertLoader::new(self, prepared, pool)))
    }
}

/// What a lazily loaded [`BertEmbedder`] knows before its weights are in
/// memory (its configuration and tokenizer, a few MB), and how to load
/// them. From [`BertEmbedderBuilder::build_lazy`].
pub struct BertLoader {
    builder: BertEmbedderBuilder,
    /// The configuration, files and tokenizer, read once: every load reads
    /// only the weights, and its model shares this tokenizer.
    prepared: Prepared,
    info: ModelInfo,
    /// The dedicated compute pool, when threads were requested: the
    /// loader tokenizes on it, and every model it loads runs on it.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for BertLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertLoader")
            .field("model", self.builder.config())
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl BertLoader {
    pub(super) fn new(
        builder: BertEmbedderBuilder,
        prepared: Prepared,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Self {
        BertLoader {
            pool,
            info: prepared.info(),
            prepared,
            builder,
        }
    }
}

impl BertLoader {
    /// The output settings the loaded model will run with (pooling,
    /// normalisation, sequence length, precision, dimensions).
    pub fn settings(&self) -> super::OutputSettings {
        self.prepared.settings
    }
}

impl ModelLoader for BertLoader {
    type Model = BertEmbedder;

    /// Reads the weights (from the file as it is now), once the budget
    /// admits the load; the configuration and tokenizer are those read
    /// when the loader was built, so every load costs the same.
    fn load(&self) -> Result<BertEmbedder> {
        self.builder
            .load_prepared(&self.prepared, self.pool.clone())
    }

    fn info(&self) -> ModelInfo {
        self.info
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        run_on(self.pool.as_deref(), || {
            encode(
                &self.prepared.tokenizer,
                texts,
                self.prepared.prompt.as_ref(),
            )
        })
    }

    fn prompt_names(&self) -> Vec<String> {
        self.prepared.prompts.names()
    }

    fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
        let prompt = prompt
            .map(|name| self.prepared.prompts.active(name))
            .transpose()?;
        run_on(self.pool.as_deref(), || {
            encode(&self.prepared.tokenizer, texts, prompt)
        })
    }
}
