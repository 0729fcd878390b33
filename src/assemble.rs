//! The BERT backend put together with a [`Config`]: the model loads under
//! the memory budget its batches then run under.
//!
//! Above both the core and the backend (which knows nothing of `Config`),
//! so neither depends on the other through it.

use crate::batch::BatchEmbedder;
use std::sync::Arc;

use crate::bert::{BertEmbedder, BertEmbedderBuilder, BertReranker};
use crate::config::Config;
use crate::error::Result;
use crate::memory::MemoryBudget;
use crate::service::EmbedService;
use crate::source::ModelSource;

impl BatchEmbedder<BertEmbedder> {
    /// The BERT model `config` names, loaded under one memory budget made
    /// from its memory settings, and a pipeline over it with its batching
    /// settings under the same budget: the load is admitted by
    /// [`MemoryBudget::admit_load`] against what the batches will share.
    ///
    /// ```no_run
    /// use membatch::{BatchEmbedder, Config};
    ///
    /// let batcher = BatchEmbedder::load(&Config::from_env()?)?;
    /// let vectors = batcher.embed(&["first text", "second text"])?;
    /// # Ok::<(), membatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`BertEmbedderBuilder::build`] and [`BatchEmbedder::new`].
    pub fn load(config: &Config) -> Result<Self> {
        let budget = MemoryBudget::new(config.memory().clone());
        let model = BertEmbedderBuilder::from(config.model().clone())
            .budget(budget.clone())
            .build()?;
        BatchEmbedder::new(model, budget, *config.batch())
    }
}

impl EmbedService {
    /// The BERT model `config` names, loaded on first use (and again
    /// after an unload) under one memory budget made from its memory
    /// settings, and a service over it with its batching and service
    /// settings under the same budget: one resident model for many
    /// callers, every load admitted by [`MemoryBudget::admit_load`]
    /// against what the batches share.
    ///
    /// ```no_run
    /// use membatch::{Config, EmbedService};
    ///
    /// let service = EmbedService::load(&Config::from_env()?)?;
    /// let vectors = service.embed(&["a query"])?;
    /// # Ok::<(), membatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`BertEmbedderBuilder::build_lazy`] and
    /// [`EmbedServiceBuilder::spawn`](crate::service::EmbedServiceBuilder::spawn).
    pub fn load(config: &Config) -> Result<Self> {
        Self::load_with_reranker(config, None)
    }

    /// As [`load`](Self::load), with the cross-encoder at `reranker` (if
    /// any) loaded now under the same budget
    /// ([`BertReranker::load_with`]), so that the service scores
    /// (query, document) pairs too
    /// ([`rerank`](EmbedService::rerank)).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load) and [`BertReranker::load_with`].
    pub fn load_with_reranker(config: &Config, reranker: Option<ModelSource>) -> Result<Self> {
        let budget = MemoryBudget::new(config.memory().clone());
        let model = BertEmbedderBuilder::from(config.model().clone())
            .budget(budget.clone())
            .build_lazy()?;
        let mut service = EmbedService::builder(model);
        if let Some(source) = reranker {
            let reranker = BertReranker::load_with(config, source, &budget)?;
            service = service.reranker(Arc::new(reranker));
        }
        service
            .budget(budget)
            .batch(*config.batch())
            .config(*config.service())
            .spawn()
    }
}

impl BertReranker {
    /// The cross-encoder at `source`, loaded under `budget` with the
    /// settings of `config` that apply to scoring pairs (precision,
    /// threads). The embedding model's truncation length, prompt,
    /// dimensions and normalisation are not a reranker's: it takes its
    /// length from its own files.
    ///
    /// # Errors
    ///
    /// As [`BertReranker::from_builder`].
    pub fn load_with(config: &Config, source: ModelSource, budget: &MemoryBudget) -> Result<Self> {
        let mut model = config.model().clone();
        model.source = Some(source);
        model.max_seq_length = None;
        model.prompt_name = None;
        model.dimensions = None;
        model.normalize = None;
        BertReranker::from_builder(BertEmbedderBuilder::from(model).budget(budget.clone()))
    }
}
