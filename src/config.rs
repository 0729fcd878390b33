//! [`Config`]: batching, memory and model settings in one place.
//!
//! The top of the core: it gathers the settings of [`batch`](crate::batch),
//! [`memory`](crate::memory) and the model, and builds a [`BatchEmbedder`]
//! from them ([`BatchEmbedder::with_config`]).

use crate::batch::{BatchConfig, BatchConfigBuilder, BatchEmbedder, RetryPolicy};
use crate::embedder::Embedder;
use crate::error::{Error, Result};
use crate::memory::{MemoryBudget, MemoryConfig, MemoryConfigBuilder, MemoryLimit};
use crate::model_config::ModelConfig;
use crate::precision::Precision;
use crate::service::{EmbedService, ServiceConfig, ServiceConfigBuilder};
use crate::source::ModelSource;

/// Every membatch setting: the batch-size rule, the memory budget and the
/// model. `Default` is what membatch does with no configuration;
/// [`from_env`](Config::from_env) reads the `MEMBATCH_*` variables of the
/// [settings table](crate::settings); [`Config::builder`] checks what it is given.
///
/// ```
/// use membatch::Config;
/// use membatch::memory::MemoryLimit;
///
/// let config = Config::builder()
///     .max_batch_size(32)
///     .memory_limit(MemoryLimit::parse("budget", "512MiB")?)
///     .build()?;
/// assert_eq!(config.batch().max_batch_size(), 32);
/// assert_eq!(config.memory().max_bytes(), Some(512 << 20));
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    batch: BatchConfig,
    memory: MemoryConfig,
    model: ModelConfig,
    service: ServiceConfig,
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        Config::default().into_builder()
    }

    /// A builder starting from these settings (e.g. from
    /// [`from_env`](Self::from_env), then overridden by flags).
    pub fn into_builder(self) -> ConfigBuilder {
        ConfigBuilder {
            batch: self.batch.into_builder(),
            memory: self.memory.into_builder(),
            model: self.model,
            service: self.service.into_builder(),
            origins: Vec::new(),
        }
    }

    /// Batch sizes and retries.
    pub fn batch(&self) -> &BatchConfig {
        &self.batch
    }

    /// The memory budget.
    pub fn memory(&self) -> &MemoryConfig {
        &self.memory
    }

    /// The model.
    pub fn model(&self) -> &ModelConfig {
        &self.model
    }

    /// A service's queue limits and timings.
    pub fn service(&self) -> &ServiceConfig {
        &self.service
    }
}

/// Builds a validated [`Config`]; the single place where a bad combination
/// of settings is caught.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    batch: BatchConfigBuilder,
    memory: MemoryConfigBuilder,
    model: ModelConfig,
    service: ServiceConfigBuilder,
    /// The variable or flag that set each field a check may name
    /// ([`set`](Self::set)).
    pub(crate) origins: Vec<(&'static str, String)>,
}

impl ConfigBuilder {
    /// Replaces the batching settings.
    pub fn batch(mut self, batch: BatchConfig) -> Self {
        self.batch = batch.into_builder();
        self
    }

    /// Replaces the memory settings.
    pub fn memory(mut self, memory: MemoryConfig) -> Self {
        self.memory = memory.into_builder();
        self
    }

    /// Replaces the model settings.
    pub fn model(mut self, model: ModelConfig) -> Self {
        self.model = model;
        self
    }

    /// Replaces a service's settings.
    pub fn service(mut self, service: ServiceConfig) -> Self {
        self.service = service.into_builder();
        self
    }

    /// Starting batch size.
    pub fn min_batch_size(mut self, n: usize) -> Self {
        self.batch = self.batch.min_batch_size(n);
        self
    }

    /// Largest batch.
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.batch = self.batch.max_batch_size(n);
        self
    }

    /// Growth after each successful batch.
    pub fn step(mut self, n: usize) -> Self {
        self.batch = self.batch.step(n);
        self
    }

    /// Turns adaptation on or off.
    pub fn adaptive(mut self, on: bool) -> Self {
        self.batch = self.batch.adaptive(on);
        self
    }

    /// The most padded tokens per batch.
    pub fn max_batch_tokens(mut self, tokens: usize) -> Self {
        self.batch = self.batch.max_batch_tokens(tokens);
        self
    }

    /// The memory budget, as a size or a percentage of the effective limit.
    pub fn memory_limit(mut self, limit: MemoryLimit) -> Self {
        self.memory = self.memory.limit(limit);
        self
    }

    /// The model to load.
    pub fn source(mut self, source: impl Into<ModelSource>) -> Self {
        self.model.source = Some(source.into());
        self
    }

    /// How the model's weights are held.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.model.precision = precision;
        self
    }

    /// Dedicated compute threads.
    pub fn threads(mut self, threads: usize) -> Self {
        self.model.threads = Some(threads);
        self
    }

    /// Forces L2 normalisation on or off.
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.model.normalize = Some(normalize);
        self
    }

    /// Truncation length in tokens.
    pub fn max_seq_length(mut self, tokens: usize) -> Self {
        self.model.max_seq_length = Some(tokens);
        self
    }

    /// The model's prompt put before every text.
    pub fn prompt_name(mut self, name: impl Into<String>) -> Self {
        self.model.prompt_name = Some(name.into());
        self
    }

    /// Keep the first `n` dimensions of every vector.
    pub fn dimensions(mut self, n: usize) -> Self {
        self.model.dimensions = Some(n);
        self
    }

    /// What a batch does when memory refuses it.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.batch = self.batch.retry(retry);
        self
    }

    /// Changes one of a service's settings.
    pub(crate) fn with_service(
        mut self,
        f: impl FnOnce(ServiceConfigBuilder) -> ServiceConfigBuilder,
    ) -> Self {
        self.service = f(self.service);
        self
    }

    /// Checks every part.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the first bad setting.
    pub fn build(self) -> Result<Config> {
        let origins = self.origins;
        let checked = || -> Result<Config> {
            self.model.validate()?;
            Ok(Config {
                batch: self.batch.build()?,
                memory: self.memory.build()?,
                model: self.model,
                service: self.service.build()?,
            })
        };
        checked().map_err(|e| rename(e, &origins))
    }
}

/// A check's error about `field`, renamed for the variable or flag that
/// set it.
fn rename(e: Error, origins: &[(&'static str, String)]) -> Error {
    match e {
        Error::InvalidConfig {
            name,
            value,
            reason,
        } => {
            let name = origins
                .iter()
                .find(|(field, _)| *field == name)
                .map_or(name, |(_, origin)| origin.clone());
            Error::InvalidConfig {
                name,
                value,
                reason,
            }
        }
        other => other,
    }
}

// Defined here rather than in `batch`: `Config` gathers the batch settings,
// so the dependency runs config → batch, never back.
impl<E: Embedder> BatchEmbedder<E> {
    /// A pipeline over `embedder` with the batching and memory settings of
    /// `config` (its model settings are the backend's business: load the
    /// embedder from `config.model()` first; for the BERT backend,
    /// `BatchEmbedder::load(&config)` loads it under the same budget).
    ///
    /// ```no_run
    /// # #[cfg(feature = "candle")] {
    /// use membatch::{BatchEmbedder, BertEmbedder, Config};
    ///
    /// let config = Config::from_env()?;
    /// // Loaded under a budget of the defaults; the batches under config's.
    /// let batcher = BatchEmbedder::with_config(BertEmbedder::from_config(config.model())?, &config)?;
    /// let vectors = batcher.embed(&["first text", "second text"])?;
    /// # }
    /// # Ok::<(), membatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`BatchEmbedder::new`].
    pub fn with_config(embedder: E, config: &Config) -> Result<Self> {
        BatchEmbedder::new(
            embedder,
            MemoryBudget::new(config.memory.clone()),
            config.batch,
        )
    }
}

// As above: the dependency runs config → service.
impl EmbedService {
    /// A service over `embedder` with the batching, memory and service
    /// settings of `config`, its worker on a thread of its own (see
    /// [`EmbedService::builder`] for more control).
    ///
    /// # Errors
    ///
    /// As [`EmbedServiceBuilder::spawn`](crate::service::EmbedServiceBuilder::spawn).
    pub fn with_config(embedder: impl Embedder + 'static, config: &Config) -> Result<Self> {
        EmbedService::builder(embedder)
            .budget(MemoryBudget::new(config.memory.clone()))
            .batch(config.batch)
            .config(config.service)
            .spawn()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn the_builder_validates_every_part() {
        let c = Config::builder()
            .max_batch_size(32)
            .memory_limit(MemoryLimit::Percent(50.0))
            .threads(2)
            .build()
            .unwrap();
        assert_eq!(c.batch().max_batch_size(), 32);
        assert_eq!(c.memory().max_percent(), Some(50.0));
        let err = |b: ConfigBuilder| match b.build() {
            Err(Error::InvalidConfig { name, .. }) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(Config::builder().min_batch_size(65)), "min_batch_size");
        assert_eq!(
            err(Config::builder().memory_limit(MemoryLimit::Percent(150.0))),
            "max_percent"
        );
        assert_eq!(err(Config::builder().threads(0)), "threads");
        let model = ModelConfig {
            max_seq_length: Some(0),
            ..ModelConfig::default()
        };
        assert_eq!(err(Config::builder().model(model)), "max_seq_length");
    }
}
