//! [`BertEmbedderBuilder`]: the model settings, checked, then loaded.

use std::sync::Arc;

use tokenizers::{Tokenizer, TruncationParams};

use super::encoder::{Activation, BertConfig};
use super::load::{load_bert_config, load_estimate, load_tokenizer, load_weights};
use super::metadata::SentenceConfig;
use super::pooling::Pooling;
use super::prompts::{ActivePrompt, Prompts};
use super::{BertEmbedder, OutputSettings};
use crate::embedder::{ModelInfo, ModelShape};
use crate::error::{boxed, BoxError, Error, Result};
use crate::memory::{LoadEstimate, MemoryBudget, MemoryConfig, MemoryProbe};
use crate::model_config::ModelConfig;
use crate::precision::Precision;
use crate::source::{ModelFiles, ModelSource};

/// Settings for loading a [`BertEmbedder`]; [`build`](Self::build) checks
/// them. It holds a [`ModelConfig`] (the one place model settings live):
/// start from one with [`From`], or from the defaults with
/// [`BertEmbedder::builder`].
///
/// ```no_run
/// use membatch::{BertEmbedder, BertEmbedderBuilder, Config, Precision};
///
/// let embedder = BertEmbedderBuilder::from(Config::from_env()?.model().clone())
///     .precision(Precision::Int8)
///     .build()?;
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct BertEmbedderBuilder {
    model: ModelConfig,
    budget: Option<MemoryBudget>,
    pooling: Option<Pooling>,
}

impl From<ModelConfig> for BertEmbedderBuilder {
    fn from(model: ModelConfig) -> Self {
        BertEmbedderBuilder {
            model,
            budget: None,
            pooling: None,
        }
    }
}

impl BertEmbedderBuilder {
    /// The settings so far.
    pub fn config(&self) -> &ModelConfig {
        &self.model
    }

    /// Where to load the model from. Default:
    /// [`ModelSource::default_model`].
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

    /// Pools token states this way instead of as the model's pooling config
    /// says. Needed for a model whose `modules.json` lists a `Pooling`
    /// module without its config file (loading it otherwise fails, naming
    /// the file): choose the pooling its model card gives.
    pub fn pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = Some(pooling);
        self
    }

    /// Puts the model's prompt of this name (`prompts` in
    /// `config_sentence_transformers.json`, e.g. `"query"` for
    /// `"query: "`) before every text this embedder embeds and counts. The
    /// prompt's tokens count against `max_seq_length` and the batch's token
    /// budget like the text's. Default: the file's `default_prompt_name`,
    /// else none. See also [`BertEmbedder::embed_with_prompt`].
    pub fn prompt_name(mut self, name: impl Into<String>) -> Self {
        self.model.prompt_name = Some(name.into());
        self
    }

    /// Keeps the first `n` dimensions of every vector (Matryoshka
    /// truncation, for models trained for it), normalised again when the
    /// model normalises; [`Embedder::info`](crate::Embedder::info) then
    /// says `n`. Default: all. A call can keep fewer still
    /// ([`EmbedOptions::dimensions`](crate::EmbedOptions::dimensions)).
    pub fn dimensions(mut self, n: usize) -> Self {
        self.model.dimensions = Some(n);
        self
    }

    /// The memory budget the model loads under and reads memory through:
    /// a load is admitted by [`MemoryBudget::admit_load`] (the weights and
    /// one full-length text must fit the budget's headroom), else refused
    /// with [`Error::ModelTooLarge`] before a weight is read. Give the
    /// budget the batches run under (a service loading and unloading its
    /// model shares it so). Default: a budget of [`MemoryConfig`]'s
    /// defaults (70% of the limit).
    pub fn budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// What loading this model's weights will cost, from its configuration
    /// (no weight is read): what [`build`](Self::build) checks against the
    /// budget.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), for what it reads before the weights.
    pub fn load_estimate(&self) -> Result<LoadEstimate> {
        Ok(self.prepare()?.load_estimate())
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
    /// - [`Error::ModelTooLarge`] when the weights and one full-length
    ///   text would not fit the memory budget ([`budget`](Self::budget));
    /// - [`Error::Hub`] when a hub file can be neither found in the cache nor
    ///   fetched;
    /// - [`Error::ThreadPool`] when the thread pool cannot start.
    pub fn build(self) -> Result<BertEmbedder> {
        let prepared = self.prepare()?;
        let pool = self.thread_pool()?;
        self.load_weights(&prepared, pool)
    }

    /// Checks the settings and reads everything but the weights: the
    /// configuration, the sentence-transformers files and the tokenizer,
    /// set up as the embedder runs it.
    pub(super) fn prepare(&self) -> Result<Prepared> {
        let model = &self.model;
        model.validate()?;
        let source = model
            .source
            .clone()
            .unwrap_or_else(ModelSource::default_model);
        tracing::info!(model = %source, "loading BERT embedder");
        let files = source.resolve()?;
        let (config, activation) = load_bert_config(&files)?;
        let sentence = SentenceConfig::load(&files, self.pooling)?;
        let mut tokenizer = load_tokenizer(&files)?;
        let settings = OutputSettings {
            pooling: sentence.pooling,
            normalize: model.normalize.unwrap_or(sentence.normalize),
            max_seq_length: model
                .max_seq_length
                .or(sentence.max_seq_length)
                .unwrap_or(config.max_tokens()),
            precision: model.precision,
            dimensions: model.dimensions,
        };
        if let Some(n) = model.dimensions {
            if n > config.hidden_size {
                return Err(Error::invalid_config(
                    "dimensions",
                    n,
                    format!(
                        "must be between 1 and the model's dimension ({})",
                        config.hidden_size
                    ),
                ));
            }
        }
        if settings.precision == Precision::Int8 && !config.family.is_packed() {
            return Err(Error::invalid_config(
                "precision",
                "int8",
                format!(
                    "int8 runs in membatch's packed pass (BERT, RoBERTa, MPNet); {:?} models run in f32",
                    config.family
                ),
            ));
        }
        let max = settings.max_seq_length;
        if max < 2 || max > config.max_tokens() {
            return Err(Error::invalid_config(
                "max_seq_length",
                max,
                format!(
                    "must be between 2 (room for the start and end tokens) and the positions the model has ({})",
                    config.max_tokens()
                ),
            ));
        }
        // The tokenizer's own truncation and padding settings are replaced:
        // texts are truncated at max_seq_length and never padded (the
        // encoder packs them).
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
        tokenizer.with_padding(None);
        let prompts = Prompts::new(sentence.prompts, sentence.include_prompt, &tokenizer)?;
        let prompt = match model
            .prompt_name
            .as_ref()
            .or(sentence.default_prompt_name.as_ref())
        {
            Some(name) => Some(prompts.active(name)?.clone()),
            None => None,
        };
        Ok(Prepared {
            source,
            files,
            config,
            activation,
            tokenizer: Arc::new(tokenizer),
            settings,
            prompts,
            prompt,
        })
    }

    /// Reads the weights of a prepared model, after checking they fit.
    fn load_weights(
        &self,
        p: &Prepared,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Result<BertEmbedder> {
        let (encoder, probe) = self.load_checked(p, |p, int8| {
            load_weights(&p.files, &p.config, p.activation, int8)
        })?;
        let info = p
            .info()
            .with_cost_prior(encoder.cost_prior())
            .with_weight_bytes(encoder.weight_bytes() as u64);
        let embedder = BertEmbedder {
            encoder,
            info,
            tokenizer: p.tokenizer.clone(),
            settings: p.settings,
            prompts: p.prompts.clone(),
            prompt: p.prompt.clone(),
            pool,
            probe,
            name: p.source.id(),
        };
        tracing::info!(
            model = %p.source,
            dimension = embedder.info.dimension,
            weight_bytes = embedder.encoder.weight_bytes(),
            settings = ?embedder.settings,
            threads = ?embedder.threads(),
            "BERT embedder ready"
        );
        Ok(embedder)
    }

    /// Reads a prepared model's weights with `read` (given whether to
    /// quantise) once the budget admits the load, then hands the load's
    /// temporary memory back. Returns them with the probe the model's own
    /// checks then read: the budget's, so one probe serves both.
    pub(super) fn load_checked<T>(
        &self,
        p: &Prepared,
        read: impl FnOnce(&Prepared, bool) -> Result<T>,
    ) -> Result<(T, Arc<dyn MemoryProbe>)> {
        let precision = p.settings.precision;
        let budget = self.load_budget();
        budget.admit_load(&p.load_estimate(), precision)?;
        let loaded = read(p, precision == Precision::Int8)?;
        // Loading went through temporary tensors (and, for int8, the f32
        // weights): hand that memory back before the first batch measures.
        crate::memory::trim();
        Ok((loaded, budget.probe().clone()))
    }

    /// The budget a load is admitted under: the one given, else the
    /// defaults' over the system's figures.
    fn load_budget(&self) -> MemoryBudget {
        self.budget
            .clone()
            .unwrap_or_else(|| MemoryBudget::new(MemoryConfig::default()))
    }

    /// The dedicated compute pool, when threads were requested (shared by a
    /// lazy loader's tokenizing and the models it loads).
    pub(super) fn thread_pool(&self) -> Result<Option<Arc<rayon::ThreadPool>>> {
        let Some(threads) = self.model.threads else {
            return Ok(None);
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("membatch-compute-{i}"))
            .build()
            .map(|pool| Some(Arc::new(pool)))
            .map_err(|e| Error::ThreadPool {
                threads,
                source: boxed(e),
            })
    }

    /// Loads the weights of a prepared model onto `pool` (the lazy
    /// loader's load).
    pub(super) fn load_prepared(
        &self,
        prepared: &Prepared,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Result<BertEmbedder> {
        self.load_weights(prepared, pool)
    }
}

/// A model read up to its weights.
pub(super) struct Prepared {
    pub(super) source: ModelSource,
    pub(super) files: ModelFiles,
    pub(super) config: BertConfig,
    pub(super) activation: Activation,
    /// Shared with the models a lazy loader loads from it.
    pub(super) tokenizer: Arc<Tokenizer>,
    pub(super) settings: OutputSettings,
    pub(super) prompts: Prompts,
    pub(super) prompt: Option<ActivePrompt>,
}

impl Prepared {
    /// What the model is before its weights are read (no weight bytes).
    pub(super) fn info(&self) -> ModelInfo {
        let dimension = self.settings.dimensions.unwrap_or(self.config.hidden_size);
        ModelInfo::new(dimension, self.settings.max_seq_length)
            .with_normalized(self.settings.normalize)
            .with_shape(self.shape())
            .with_cost_prior(super::cost_prior_of(&self.config))
            .with_word_by_word(super::word_by_word(&self.tokenizer))
    }

    /// What loading the weights will cost.
    pub(super) fn load_estimate(&self) -> LoadEstimate {
        load_estimate(
            &self.config,
            self.settings.precision,
            self.settings.max_seq_length,
        )
    }

    pub(super) fn shape(&self) -> ModelShape {
        let c = &self.config;
        ModelShape::new(
            c.hidden_size,
            c.num_attention_heads,
            c.num_hidden_layers,
            c.intermediate_size,
        )
    }
}
