//! [`Config`]: batching, memory and model settings in one place.
//!
//! The top of the core: it gathers the settings of [`batch`](crate::batch),
//! [`memory`](crate::memory) and the model, and builds a [`BatchEmbedder`]
//! from them ([`BatchEmbedder::with_config`]).

use crate::batch::{BatchConfig, BatchConfigBuilder, BatchEmbedder};
use crate::embedder::Embedder;
use crate::env;
use crate::error::Result;
use crate::memory::{MemoryBudget, MemoryConfig, MemoryConfigBuilder, MemoryLimit};
use crate::model_config::ModelConfig;
use crate::precision::Precision;
use crate::service::{EmbedService, ServiceConfig};
use crate::source::ModelSource;

/// Every membatch setting: the batch-size rule, the memory budget and the
/// model. `Default` is what membatch does with no configuration;
/// [`from_env`](Config::from_env) reads the `EMBEDDING_*` variables listed
/// in `docs/configuration.md`; [`Config::builder`] checks what it is given.
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
        }
    }

    /// The defaults overridden by the environment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the first variable with a bad value.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(env::process)
    }

    /// As [`from_env`](Self::from_env), reading variables through `get`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Ok(Config {
            batch: BatchConfig::from_lookup(&get)?,
            memory: MemoryConfig::from_lookup(&get)?,
            model: ModelConfig::from_lookup(&get)?,
            service: ServiceConfig::from_lookup(&get)?,
        })
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
    service: crate::service::ServiceConfigBuilder,
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

    /// Checks every part.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the first bad setting.
    pub fn build(self) -> Result<Config> {
        self.model.validate()?;
        Ok(Config {
            batch: self.batch.build()?,
            memory: self.memory.build()?,
            model: self.model,
            service: self.service.build()?,
        })
    }
}

// Defined here rather than in `batch`: `Config` gathers the batch settings,
// so the dependency runs config → batch, never back.
impl<E: Embedder> BatchEmbedder<E> {
    /// A pipeline over `embedder` with the batching and memory settings of
    /// `config` (its model settings are the backend's business: load the
    /// embedder from `config.model()` first).
    ///
    /// ```no_run
    /// # #[cfg(feature = "candle")] {
    /// use membatch::{BatchEmbedder, BertEmbedder, Config};
    ///
    /// let config = Config::from_env()?;
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
    use crate::test_util::lookup;

    #[test]
    fn every_part_reads_the_environment() {
        let c = Config::from_lookup(lookup(&[
            ("EMBEDDING_MAX_BATCH_SIZE", "16"),
            ("EMBEDDING_MAX_MEMORY", "300MiB"),
            ("EMBEDDING_THREADS", "2"),
            ("EMBEDDING_NORMALIZE", "off"),
            ("EMBEDDING_MAX_SEQ_LENGTH", "128"),
            ("EMBEDDING_PRECISION", "INT8"),
            ("MEMBATCH_MODEL", "/models/minilm"),
        ]))
        .unwrap();
        assert_eq!(c.batch().max_batch_size(), 16);
        assert_eq!(c.memory().max_bytes(), Some(300 << 20));
        assert_eq!(
            c.model,
            ModelConfig {
                source: Some(ModelSource::dir("/models/minilm")),
                normalize: Some(false),
                threads: Some(2),
                max_seq_length: Some(128),
                precision: Precision::Int8,
            }
        );
        assert_eq!(Config::from_lookup(lookup(&[])).unwrap(), Config::default());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, var) in [
            (&[("EMBEDDING_THREADS", "0")][..], "EMBEDDING_THREADS"),
            (
                &[("EMBEDDING_MAX_SEQ_LENGTH", "long")][..],
                "EMBEDDING_MAX_SEQ_LENGTH",
            ),
            (&[("EMBEDDING_NORMALIZE", "2")][..], "EMBEDDING_NORMALIZE"),
            (
                &[("EMBEDDING_PRECISION", "int4")][..],
                "EMBEDDING_PRECISION",
            ),
            (
                &[("EMBEDDING_MAX_MEMORY", "lots")][..],
                "EMBEDDING_MAX_MEMORY",
            ),
            (
                &[("EMBEDDING_MIN_BATCH_SIZE", "x")][..],
                "EMBEDDING_MIN_BATCH_SIZE",
            ),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = pairs;
            match Config::from_lookup(lookup(pairs)) {
                Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, var),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

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

    #[test]
    fn a_flag_overrides_one_setting_and_keeps_the_rest() {
        let from_env = Config::from_lookup(lookup(&[
            ("EMBEDDING_MAX_MEMORY_PERCENT", "60"),
            ("EMBEDDING_MIN_BATCH_SIZE", "4"),
        ]))
        .unwrap();
        let c = from_env
            .into_builder()
            .memory_limit(MemoryLimit::Bytes(300 << 20))
            .build()
            .unwrap();
        assert_eq!(c.memory().max_bytes(), Some(300 << 20));
        assert_eq!(
            c.memory().max_percent(),
            None,
            "the flag replaces the budget"
        );
        assert_eq!(c.batch().min_batch_size(), 4);
    }
}
