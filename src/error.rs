//! The crate's error type.
//!
//! Every fallible function in membatch returns [`Result<T>`]. Variants are
//! structured (paths, names, values) rather than strings so that a caller can
//! react to them, and the whole type is `Clone` so that one failure can be
//! handed to every caller that waited on the same batch.

use std::path::PathBuf;
use std::sync::Arc;

/// A boxed, shareable error from a lower layer (I/O, JSON, candle, tokenizers).
pub type BoxError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, membatch::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in membatch.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the model could not be found or used. `path` names the file.
    #[error("model file {}: {kind}", path.display())]
    ModelFile {
        /// The file at fault (or the directory, when the whole model is missing).
        path: PathBuf,
        /// What is wrong with it.
        kind: ModelFileError,
    },

    /// A file could not be fetched from the Hugging Face hub or found in its cache.
    #[error("cannot get {file} of {repo} from the Hugging Face hub: {reason}")]
    Hub {
        /// The repository id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
        repo: String,
        /// The file within the repository.
        file: String,
        /// Why it failed, with what to do about it.
        reason: String,
    },

    /// A setting has a value that cannot work.
    #[error("invalid setting {name} = {value:?}: {reason}")]
    InvalidConfig {
        /// The setting (or environment variable) at fault.
        name: String,
        /// The value it was given.
        value: String,
        /// Why it cannot work.
        reason: String,
    },

    /// The work does not fit in the memory budget right now, even after a
    /// cleanup: shrink it (a smaller batch) and ask again.
    #[error("memory pressure ({level}): the work needs {needed} bytes but only {available} are available in the budget; retry with less")]
    MemoryPressure {
        /// The estimate that was asked for, in bytes.
        needed: u64,
        /// The headroom left in the budget, in bytes.
        available: u64,
        /// The pressure level at the refusal.
        level: crate::memory::PressureLevel,
    },

    /// The memory budget cannot hold the smallest possible batch (one text)
    /// even after a cleanup, so retrying cannot help: raise the budget, or
    /// lower `max_seq_length` so that each text costs less.
    #[error(
        "memory budget too small: one text of {tokens} tokens needs about {} in total \
         ({} already in use) but the budget is {}; raise the budget \
         (EMBEDDING_MAX_MEMORY, --memory-budget) or lower max_seq_length",
        bytesize::ByteSize(*needed), bytesize::ByteSize(*in_use), bytesize::ByteSize(*budget)
    )]
    BudgetTooSmall {
        /// The bytes the process would need in total: what it uses now plus
        /// the estimate for one text.
        needed: u64,
        /// The budget in bytes.
        budget: u64,
        /// The bytes already in use when the work was refused.
        in_use: u64,
        /// The token count of the text that did not fit.
        tokens: usize,
    },

    /// Loading the model would need more memory than the process can get
    /// (the container's limit, else the machine's available memory, minus
    /// what is in use), so it is refused instead of being OOM-killed.
    #[error(
        "not enough memory to load the model: loading needs about {} but only {} is free \
         under the memory limit; raise the limit{}",
        bytesize::ByteSize(*needed), bytesize::ByteSize(*available),
        if *precision == crate::Precision::F32 {
            " or load the weights as int8 (EMBEDDING_PRECISION=int8, --precision int8: about a third of the memory)"
        } else {
            ""
        }
    )]
    ModelTooLarge {
        /// The estimated peak of loading, in bytes.
        needed: u64,
        /// The memory free under the limit when loading was refused.
        available: u64,
        /// The precision the weights were to be loaded in.
        precision: crate::Precision,
    },

    /// The tokenizer failed on an input.
    #[error("tokenization failed: {0}")]
    Tokenization(#[source] BoxError),

    /// The backend failed while computing embeddings.
    #[error("inference failed: {0}")]
    Inference(#[source] BoxError),

    /// The compute thread pool could not be created.
    #[error("cannot start a compute thread pool of {threads} threads: {source}")]
    ThreadPool {
        /// The requested number of threads.
        threads: usize,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// What is wrong with a model file; carried by [`Error::ModelFile`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ModelFileError {
    /// The file (or directory) does not exist.
    #[error("not found{hint}")]
    Missing {
        /// Advice on how to get the file, possibly empty.
        hint: String,
    },
    /// The file exists but could not be read.
    #[error("cannot read it: {0}")]
    Io(#[source] BoxError),
    /// The file is not the JSON that was expected.
    #[error("invalid JSON: {0}")]
    Json(#[source] BoxError),
    /// The weights are unreadable, or a tensor is missing or has the wrong shape.
    #[error("invalid weights: {0}")]
    Weights(#[source] BoxError),
    /// The tokenizer file could not be loaded.
    #[error("invalid tokenizer: {0}")]
    Tokenizer(#[source] BoxError),
    /// The model is not an architecture this backend runs.
    #[error("unsupported architecture {found:?} (membatch runs BERT-family encoders, model_type \"bert\")")]
    UnsupportedArchitecture {
        /// The architecture named by the file.
        found: String,
    },
    /// The sentence-transformers pooling mode is not one membatch implements.
    #[error("unsupported pooling {found:?} (supported: mean, cls, max)")]
    UnsupportedPooling {
        /// The pooling mode(s) the file enables.
        found: String,
    },
    /// `config.json` asks for a variant of the architecture membatch does
    /// not implement (an activation, a position embedding type).
    #[error("unsupported {name} {found:?} (supported: {supported})")]
    UnsupportedSetting {
        /// The setting, as `config.json` names it.
        name: String,
        /// Its value in the file.
        found: String,
        /// The values membatch runs.
        supported: String,
    },
    /// `modules.json` lists a module membatch cannot run.
    #[error("unsupported sentence-transformers module {found:?} (supported: Transformer, Pooling, Normalize)")]
    UnsupportedModule {
        /// The module type named by the file.
        found: String,
    },
}

impl Error {
    /// An [`Error::ModelFile`] for `path`.
    pub(crate) fn model_file(path: impl Into<PathBuf>, kind: ModelFileError) -> Self {
        Error::ModelFile {
            path: path.into(),
            kind,
        }
    }

    /// An [`Error::InvalidConfig`].
    pub(crate) fn invalid_config(
        name: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Wraps any error as a [`BoxError`].
#[cfg_attr(not(feature = "candle"), allow(dead_code))]
pub(crate) fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> BoxError {
    Arc::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_problem() {
        let e = Error::model_file(
            "/m/config.json",
            ModelFileError::UnsupportedArchitecture {
                found: "gpt2".into(),
            },
        );
        let msg = e.to_string();
        assert!(msg.contains("/m/config.json"), "{msg}");
        assert!(msg.contains("gpt2"), "{msg}");
    }

    #[test]
    fn error_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
