//! [`Config`]: batching, memory and model settings in one place.

use crate::batch::{parse_bool, BatchConfig};
use crate::error::{Error, Result};
use crate::memory::MemoryConfig;
use crate::source::{ModelSource, MODEL_ENV};

/// Environment variable for the number of compute threads.
pub const ENV_THREADS: &str = "EMBEDDING_THREADS";
/// Environment variable for the most tokens of one text the model sees.
pub const ENV_MAX_SEQ_LENGTH: &str = "EMBEDDING_MAX_SEQ_LENGTH";
/// Environment variable forcing L2 normalisation on or off.
pub const ENV_NORMALIZE: &str = "EMBEDDING_NORMALIZE";
/// Environment variable choosing how the weights are held (`f32`, `int8`).
pub const ENV_PRECISION: &str = "EMBEDDING_PRECISION";

/// How a model's weights are held.
///
/// `F32` reproduces the reference model (sentence-transformers) to 1e-6.
/// `Int8` keeps the word embeddings and every dense layer's weights as
/// bytes with one scale per 32 values, expanded to `f32` just before each
/// product: a third of the resident model (31 MiB instead of 97 MiB for
/// all-MiniLM-L6-v2) at about the same speed, cosine similarity to the `F32`
/// output of at least 0.9994 on the reference texts (measured figures in
/// `docs/benchmarks.md`). Arithmetic stays `f32` either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precision {
    /// Plain `f32`, exact.
    #[default]
    F32,
    /// Int8 weights, `f32` arithmetic.
    Int8,
}

impl Precision {
    /// Parses `f32` or `int8` (case-insensitive), naming `setting` in the
    /// error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for any other value.
    pub fn parse(setting: &str, value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "int8" | "i8" | "q8" => Ok(Precision::Int8),
            _ => Err(Error::invalid_config(setting, value, "must be f32 or int8")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        })
    }
}

/// Which model to load and how to run it. `None` fields take the model's
/// own settings (or the library's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelConfig {
    /// Where the model comes from. Default: [`ModelSource::from_env_or_default`].
    pub source: Option<ModelSource>,
    /// Forces L2 normalisation on or off. Default: as the model's
    /// `modules.json` says.
    pub normalize: Option<bool>,
    /// Dedicated compute threads. Default: rayon's global pool.
    pub threads: Option<usize>,
    /// Truncation length in tokens. Default: the model's `max_seq_length`.
    pub max_seq_length: Option<usize>,
    /// How the weights are held. Default: [`Precision::F32`].
    pub precision: Precision,
}

impl ModelConfig {
    /// The defaults, overridden by `MEMBATCH_MODEL`, `EMBEDDING_THREADS`,
    /// `EMBEDDING_MAX_SEQ_LENGTH`, `EMBEDDING_NORMALIZE` and
    /// `EMBEDDING_PRECISION` when set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let count = |name: &str, v: String| match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::invalid_config(
                name,
                v,
                "must be a whole number of at least 1",
            )),
        };
        Ok(ModelConfig {
            source: set(MODEL_ENV).map(|v| ModelSource::parse(v.trim())),
            normalize: set(ENV_NORMALIZE)
                .map(|v| parse_bool(ENV_NORMALIZE, &v))
                .transpose()?,
            threads: set(ENV_THREADS)
                .map(|v| count(ENV_THREADS, v))
                .transpose()?,
            max_seq_length: set(ENV_MAX_SEQ_LENGTH)
                .map(|v| count(ENV_MAX_SEQ_LENGTH, v))
                .transpose()?,
            precision: set(ENV_PRECISION)
                .map(|v| Precision::parse(ENV_PRECISION, &v))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Every membatch setting: the batch-size rule, the memory budget and the
/// model. `Default` is what membatch does with no configuration;
/// [`from_env`](Config::from_env) reads the `EMBEDDING_*` variables listed
/// in `docs/configuration.md`.
///
/// ```
/// use membatch::Config;
/// use membatch::memory::MemoryLimit;
///
/// let config = Config::builder()
///     .max_batch_size(32)
///     .memory_limit(MemoryLimit::parse("--memory-budget", "512MiB")?)
///     .build()?;
/// assert_eq!(config.batch.max_batch_size, 32);
/// assert_eq!(config.memory.max_bytes, Some(512 << 20));
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Batch sizes.
    pub batch: BatchConfig,
    /// The memory budget.
    pub memory: MemoryConfig,
    /// The model.
    pub model: ModelConfig,
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// A builder starting from these settings (e.g. from
    /// [`from_env`](Self::from_env), then overridden by flags).
    pub fn into_builder(self) -> ConfigBuilder {
        ConfigBuilder { config: self }
    }

    /// The defaults overridden by the environment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first variable with a bad value.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
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
        })
    }
}

/// Builds a validated [`Config`]; the single place where a bad combination
/// of settings is caught.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Replaces the batching settings.
    pub fn batch(mut self, batch: BatchConfig) -> Self {
        self.config.batch = batch;
        self
    }

    /// Replaces the memory settings.
    pub fn memory(mut self, memory: MemoryConfig) -> Self {
        self.config.memory = memory;
        self
    }

    /// Replaces the model settings.
    pub fn model(mut self, model: ModelConfig) -> Self {
        self.config.model = model;
        self
    }

    /// Starting batch size.
    pub fn min_batch_size(mut self, n: usize) -> Self {
        self.config.batch.min_batch_size = n;
        self
    }

    /// Largest batch size.
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.config.batch.max_batch_size = n;
        self
    }

    /// Growth after each successful batch.
    pub fn step(mut self, n: usize) -> Self {
        self.config.batch.step = n;
        self
    }

    /// Turns adaptation on or off.
    pub fn adaptive(mut self, on: bool) -> Self {
        self.config.batch.adaptive = on;
        self
    }

    /// The most padded tokens per batch.
    pub fn max_batch_tokens(mut self, tokens: usize) -> Self {
        self.config.batch.max_batch_tokens = Some(tokens);
        self
    }

    /// The memory budget, as a size or a percentage of the effective limit.
    pub fn memory_limit(mut self, limit: crate::memory::MemoryLimit) -> Self {
        use crate::memory::MemoryLimit;
        (self.config.memory.max_percent, self.config.memory.max_bytes) = match limit {
            MemoryLimit::Percent(p) => (Some(p), None),
            MemoryLimit::Bytes(b) => (None, Some(b)),
        };
        self
    }

    /// The model to load.
    pub fn source(mut self, source: impl Into<ModelSource>) -> Self {
        self.config.model.source = Some(source.into());
        self
    }

    /// How the model's weights are held.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.config.model.precision = precision;
        self
    }

    /// Dedicated compute threads.
    pub fn threads(mut self, threads: usize) -> Self {
        self.config.model.threads = Some(threads);
        self
    }

    /// Checks every part.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad setting.
    pub fn build(self) -> Result<Config> {
        let c = self.config;
        c.batch.validate()?;
        c.memory.validate()?;
        for (name, value) in [
            ("threads", c.model.threads),
            ("max_seq_length", c.model.max_seq_length),
        ] {
            if value == Some(0) {
                return Err(Error::invalid_config(name, 0, "must be at least 1"));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryLimit;
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
        assert_eq!(c.batch.max_batch_size, 16);
        assert_eq!(c.memory.max_bytes, Some(300 << 20));
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
        assert_eq!(c.batch.max_batch_size, 32);
        assert_eq!(c.memory.max_percent, Some(50.0));
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
    }
}
