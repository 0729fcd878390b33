//! [`ModelConfig`]: which model to load and how to run it, a plain value.
//!
//! A leaf of the core (it names only the settings' own types), so that a
//! backend's builder can hold one without knowing the rest of the
//! configuration ([`Config`](crate::Config) gathers it with the batching
//! and memory settings).

use crate::env::{self, Vars};
use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::source::ModelSource;

/// Which model to load and how to run it: the one place these settings
/// live (a backend's builder, such as `BertEmbedderBuilder`, holds one).
/// `None` fields take the model's own settings (or the library's defaults).
///
/// A plain value: start from [`Default`] or [`from_env`](Self::from_env)
/// and set what you need. Every constructor that uses it checks it (a
/// backend's `build`, [`ConfigBuilder::build`](crate::ConfigBuilder::build)).
///
/// ```
/// use membatch::{ModelConfig, Precision};
///
/// let mut model = ModelConfig::default();
/// model.threads = Some(2);
/// model.precision = Precision::Int8;
/// assert_eq!(model.threads, Some(2));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelConfig {
    /// Where the model comes from. Default: [`ModelSource::from_env_or_default`].
    pub source: Option<ModelSource>,
    /// Forces L2 normalisation on or off. Default: as the model's
    /// `modules.json` says.
    pub normalize: Option<bool>,
    /// Dedicated compute threads (at least 1). Default: rayon's global pool.
    pub threads: Option<usize>,
    /// Truncation length in tokens (at least 1; a backend may ask for more).
    /// Default: the model's `max_seq_length`.
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
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(env::process)
    }

    /// As [`from_env`](Self::from_env), reading variables through `get`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars::new(get);
        Ok(ModelConfig {
            source: vars.text(env::ENV_MODEL).map(|v| ModelSource::parse(&v)),
            normalize: vars.flag(env::ENV_NORMALIZE)?,
            threads: vars.count(env::ENV_THREADS)?,
            max_seq_length: vars.count(env::ENV_MAX_SEQ_LENGTH)?,
            precision: vars.parsed(env::ENV_PRECISION)?.unwrap_or_default(),
        })
    }

    /// Checks the settings a value of this type can get wrong: zero threads
    /// or a zero sequence length.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.threads == Some(0) {
            return Err(Error::invalid_config(
                "threads",
                0,
                "at least one compute thread is needed",
            ));
        }
        if self.max_seq_length == Some(0) {
            return Err(Error::invalid_config(
                "max_seq_length",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
