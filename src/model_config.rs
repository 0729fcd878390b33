//! [`ModelConfig`]: which model to load and how to run it, a plain value.
//!
//! A leaf of the core (it names only the settings' own types), so that a
//! backend's builder can hold one without knowing the rest of the
//! configuration ([`Config`](crate::Config) gathers it with the batching
//! and memory settings).

use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::source::ModelSource;

/// Which model to load and how to run it: the one place these settings
/// live (a backend's builder, such as `BertEmbedderBuilder`, holds one).
/// `None` fields take the model's own settings (or the library's defaults).
///
/// A plain value: start from [`Default`] (or take
/// [`Config::from_env`](crate::Config::from_env)'s) and set what you need. Every constructor that uses it checks it (a
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
    /// Where the model comes from. Default: [`ModelSource::default_model`].
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
    /// The model's prompt put before every text (`prompts` in
    /// `config_sentence_transformers.json`). Default: the model's
    /// `default_prompt_name`, else none. A call can choose another
    /// ([`EmbedOptions`](crate::EmbedOptions)).
    pub prompt_name: Option<String>,
    /// Keep the first N dimensions of every vector (Matryoshka
    /// truncation; normalised again when the model normalises). At least
    /// 1, at most the model's dimension (its backend checks that). Default:
    /// all.
    pub dimensions: Option<usize>,
}

impl ModelConfig {
    /// Checks the settings a value of this type can get wrong: zero threads
    /// a zero sequence length or
    /// dimension, an empty prompt name.
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
        if self.dimensions == Some(0) {
            return Err(Error::invalid_config("dimensions", 0, "must be at least 1"));
        }
        if self.prompt_name.as_deref() == Some("") {
            return Err(Error::invalid_config(
                "prompt_name",
                "",
                "name one of the model's prompts",
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
