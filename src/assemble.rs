//! The BERT backend put together with a [`Config`]: the model loads under
//! the memory budget its batches then run under.
//!
//! Above both the core and the backend (which knows nothing of `Config`),
//! so neither depends on the other through it.

use crate::batch::BatchEmbedder;
use crate::bert::{BertEmbedder, BertEmbedderBuilder};
use crate::config::Config;
use crate::error::Result;
use crate::memory::MemoryBudget;
use crate::service::EmbedService;

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
        let budget = MemoryBudget::new(config.memory().clone());
        let model = BertEmbedderBuilder::from(config.model().clone())
            .budget(budget.clone())
            .build_lazy()?;
        EmbedService::builder(model)
            .budget(budget)
            .batch(*config.batch())
            .config(*config.service())
            .spawn()
    }
}
