//! [`BertEmbedderBuilder`]: the model settings, checked, then loaded.

use super::load::{check_room_to_load, load_bert_config, load_tokenizer, load_weights};
use super::metadata::SentenceConfig;
use super::{BertEmbedder, OutputSettings};
use crate::config::ModelConfig;
use crate::error::{boxed, Error, Result};
use crate::precision::Precision;
use crate::source::ModelSource;

/// Settings for loading a [`BertEmbedder`]; [`build`](Self::build) checks
/// them. It holds a [`ModelConfig`] (the one place model settings live):
/// start from one with [`From`], or from the defaults with
/// [`BertEmbedder::builder`].
///
/// ```no_run
/// use membatch::{BertEmbedder, BertEmbedderBuilder, ModelConfig, Precision};
///
/// let embedder = BertEmbedderBuilder::from(ModelConfig::from_env()?)
///     .precision(Precision::Int8)
///     .build()?;
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct BertEmbedderBuilder {
    model: ModelConfig,
}

impl From<ModelConfig> for BertEmbedderBuilder {
    fn from(model: ModelConfig) -> Self {
        BertEmbedderBuilder { model }
    }
}

impl BertEmbedderBuilder {
    /// The settings so far.
    pub fn config(&self) -> &ModelConfig {
        &self.model
    }

    /// Where to load the model from. Default:
    /// [`ModelSource::from_env_or_default`].
    pub fn source(mut self, source: impl Into<ModelSource>) -> Self {
        self.model.source = Some(source.into());
        self
    }

    /// Forces L2 normalisation on or off. Default: on when the model's
    /// `modules.json` has a `Normalize` module.
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.model.normalize = Some(normalize);
        self
    }

    /// Runs tokenisation and forward passes on a dedicated pool of `threads`
    /// threads. Default: none, so the work runs on rayon's global pool
    /// (sized by `RAYON_NUM_THREADS`, else the number of CPUs). See
    /// `docs/threads.md`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.model.threads = Some(threads);
        self
    }

    /// Truncates texts to this many tokens (special tokens included). Default:
    /// `max_seq_length` from `sentence_bert_config.json`, else the model's
    /// `max_position_embeddings`.
    pub fn max_seq_length(mut self, tokens: usize) -> Self {
        self.model.max_seq_length = Some(tokens);
        self
    }

    /// Holds the weights in int8 or `f32` (see [`Precision`]). Default:
    /// `f32`.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.model.precision = precision;
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
    /// - [`Error::ModelTooLarge`] when loading the weights would not fit
    ///   under the memory limit;
    /// - [`Error::Hub`] when a hub file can be neither found in the cache nor
    ///   fetched;
    /// - [`Error::ThreadPool`] when the thread pool cannot start.
    pub fn build(self) -> Result<BertEmbedder> {
        let model = self.model;
        model.validate()?;
        let source = model
            .source
            .unwrap_or_else(ModelSource::from_env_or_default);
        tracing::info!(model = %source, "loading BERT embedder");
        let files = source.resolve()?;
        let (config, activation) = load_bert_config(&files)?;
        check_room_to_load(&config, model.precision)?;
        let sentence = SentenceConfig::load(&files)?;
        let tokenizer = load_tokenizer(&files)?;
        let int8 = model.precision == Precision::Int8;
        let encoder = load_weights(&files, &config, activation, int8)?;
        // Loading went through temporary tensors (and, for int8, the f32
        // weights): hand that memory back before the first batch measures.
        crate::memory::trim();
        let settings = OutputSettings {
            pooling: sentence.pooling,
            normalize: model.normalize.unwrap_or(sentence.normalize),
            max_seq_length: model
                .max_seq_length
                .or(sentence.max_seq_length)
                .unwrap_or(config.max_position_embeddings),
            precision: model.precision,
        };
        let mut embedder =
            BertEmbedder::assemble(encoder, &config, tokenizer, settings, source.id())?;
        if let Some(threads) = model.threads {
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
