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
