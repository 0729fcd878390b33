//! The crate's error type.
//!
//! Every fallible function in membatch returns [`Result<T>`]. Variants are
//! structured (paths, names, values) rather than strings so that a caller can
//! react to them, and the whole type is `Clone` so that one failure can be
//! handed to every caller that waited on the same batch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::precision::Precision;
use crate::pressure::PressureLevel;

/// A boxed, shareable error from a lower layer (I/O, JSON, candle, tokenizers).
pub type BoxError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, membatch::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in membatch.
///
/// `Display` gives one sentence for the error itself; the cause, when there
/// is one, is its [`source`](std::error::Error::source) and is not repeated.
/// [`Error::report`] writes the whole chain on one line.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the model could not be found or used. `path` names the
    /// file; `kind` (the source) says what is wrong with it.
    #[error("model file {}", path.display())]
    ModelFile {
        /// The file at fault (or the directory, when the whole model is missing).
        path: PathBuf,
        /// What is wrong with it.
        #[source]
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
    /// cleanup: shrink it (a smaller batch) and ask again, or wait for
    /// other work to finish. An [`Embedder`](crate::Embedder) returns it to
    /// have its batch retried smaller.
    #[error(
        "not enough memory for this work now: it needs about {} but only {} is free \
         (pressure level {level}); retry with less work, or later",
        bytesize::ByteSize(*needed), bytesize::ByteSize(*available)
    )]
    MemoryPressure {
        /// The estimate that was asked for, in bytes.
        needed: u64,
        /// The headroom left in the budget, in bytes.
        available: u64,
        /// The pressure level at the refusal.
        level: PressureLevel,
    },

    /// The memory pool the budget shares with an engine (see
    /// [`SharedPool`](crate::memory::SharedPool)) has no room for this work
    /// now; `reason` is the pool's own account. A batcher shrinks the batch
    /// and asks again before it returns this.
    #[error("the shared memory pool has no room for {}: {reason}", bytesize::ByteSize(*needed))]
    PoolRefused {
        /// The estimate that was asked for, in bytes.
        needed: u64,
        /// Why the pool refused.
        reason: String,
    },

    /// The memory budget cannot hold the smallest possible batch (one text)
    /// even after a cleanup, so retrying cannot help: raise the budget, or
    /// lower `max_seq_length` so that each text costs less.
    #[error(
        "memory budget too small: one text of {tokens} tokens needs about {} in total \
         ({} already in use) but the budget is {}; raise the budget \
         (MemoryConfig, MEMBATCH_MAX_MEMORY) or lower max_seq_length (MEMBATCH_MAX_SEQ_LENGTH)",
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

    /// The memory figures could not be read (no system total, no cgroup
    /// limit), so a budget given as a percentage is nothing: set an
    /// absolute budget to run without them.
    #[error(
        "cannot tell how much memory there is (the system's memory figures could not be read); \
         set an absolute budget (MemoryConfig::max_bytes, MEMBATCH_MAX_MEMORY) to run without them"
    )]
    MemoryUnknown,

    /// Loading the model would need more memory than the budget has left
    /// (or than is free under the limit, when that is less), so it is
    /// refused instead of being OOM-killed. The rule:
    /// [`MemoryBudget::admit_load`](crate::memory::MemoryBudget::admit_load).
    #[error(
        "not enough memory to load the model: it needs about {} (its weights and one \
         full-length text) but only {} is free for it (the memory budget is {}); raise the \
         memory limit or the budget's share (MemoryConfig, MEMBATCH_MAX_MEMORY){}",
        bytesize::ByteSize(*needed), bytesize::ByteSize(*available), bytesize::ByteSize(*budget),
        if *precision == Precision::F32 {
            ", or hold the weights as int8 (Precision::Int8, MEMBATCH_PRECISION=int8: about a third of the memory)"
        } else {
            ""
        }
    )]
    ModelTooLarge {
        /// What the load needs, in bytes
        /// ([`LoadEstimate::needed_bytes`](crate::memory::LoadEstimate::needed_bytes)).
        needed: u64,
        /// The room it had: the budget's headroom, or the memory free
        /// under the limit when that was less.
        available: u64,
        /// The budget at the time, in bytes.
        budget: u64,
        /// The precision the weights were to be loaded in.
        precision: Precision,
    },

    /// The tokenizer failed on an input; the source says why.
    #[error("tokenization failed")]
    Tokenization(#[source] BoxError),

    /// The backend failed while computing embeddings; the source says why.
    #[error("inference failed")]
    Inference(#[source] BoxError),

    /// An [`Embedder`](crate::Embedder) broke its contract: it answered a
    /// call for `expected` texts with `got` results. A bug in the backend;
    /// no text is lost or mismatched because of it.
    #[error("the embedder's {method} returned {got} results for {expected} texts")]
    EmbedderContract {
        /// The trait method, e.g. `"embed_tokens"` or `"tokenize"`.
        method: &'static str,
        /// The number of texts it was given.
        expected: usize,
        /// The number of results it returned.
        got: usize,
    },

    /// The embedder panicked while embedding a batch. The panic was
    /// contained: the batch's callers get this error, later work runs.
    #[error("the embedder panicked: {message}")]
    EmbedderPanicked {
        /// The panic's message.
        message: String,
    },

    /// A service's queue has no room for this request now (in requests or
    /// in tokens): it was refused at once rather than left waiting. Retry
    /// after `retry_after`, or send less.
    #[error(
        "overloaded: the queue holds {queued_requests} requests and {queued_tokens} tokens, \
         no room for {tokens} more tokens; retry in {}",
        fmt_duration(retry_after)
    )]
    Overloaded {
        /// An estimate of when the queue will have drained enough.
        retry_after: Duration,
        /// Requests waiting when this one was refused.
        queued_requests: usize,
        /// Tokens waiting when this one was refused.
        queued_tokens: usize,
        /// The tokens this request would have added.
        tokens: usize,
    },

    /// Memory is at the critical level, so new work is refused until it
    /// recovers (with hysteresis): `figure_bytes` of a budget of
    /// `budget_bytes` are in use. Retry after `retry_after`.
    #[error(
        "memory critical: {} of the {} budget in use; new work is refused until usage falls; \
         retry in {}",
        bytesize::ByteSize(*figure_bytes), bytesize::ByteSize(*budget_bytes), fmt_duration(retry_after)
    )]
    MemoryCritical {
        /// The memory figure at the refusal, in bytes.
        figure_bytes: u64,
        /// The budget, in bytes.
        budget_bytes: u64,
        /// When to try again.
        retry_after: Duration,
    },

    /// A request is larger than a per-request limit allows (`limit` is
    /// `"inputs"` or `"tokens"`): split it.
    #[error("request too large: {got} {limit}, at most {max} allowed per request")]
    RequestTooLarge {
        /// What is counted.
        limit: &'static str,
        /// The request's count.
        got: usize,
        /// The limit.
        max: usize,
    },

    /// A text has more tokens than the model reads, and its caller asked
    /// for it to be refused rather than truncated
    /// ([`Truncation::Refuse`](crate::Truncation::Refuse)).
    #[error(
        "text {index} has more tokens than the model's {max_tokens}: \
         shorten it, or let it be truncated"
    )]
    TextTooLong {
        /// The text's index in its request.
        index: usize,
        /// The most tokens the model reads.
        max_tokens: usize,
    },

    /// The request was not answered within the time its caller allowed;
    /// its texts are skipped if they have not run yet.
    #[error("no answer within {}", fmt_duration(after))]
    TimedOut {
        /// The time waited.
        after: Duration,
    },

    /// The service is shut down (or shutting down) and takes no more work.
    #[error("the service is shut down")]
    Closed,

    /// The service's worker cannot continue; every queued and every later
    /// request gets this error at once. `cause` says why.
    #[error("the service's worker failed")]
    WorkerFailed {
        /// Why the worker stopped.
        #[source]
        cause: Arc<Error>,
    },

    /// The compute thread pool could not be created.
    #[error("cannot start a compute thread pool of {threads} threads")]
    ThreadPool {
        /// The requested number of threads.
        threads: usize,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// What is wrong with a model file; the source of [`Error::ModelFile`].
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
    #[error("cannot read it")]
    Io(#[source] BoxError),
    /// The file is not the JSON that was expected.
    #[error("invalid JSON")]
    Json(#[source] BoxError),
    /// The weights are unreadable, or a tensor is missing or has the wrong shape.
    #[error("invalid weights")]
    Weights(#[source] BoxError),
    /// The tokenizer file could not be loaded.
    #[error("invalid tokenizer")]
    Tokenizer(#[source] BoxError),
    /// The model is not an architecture this backend runs.
    #[error("unsupported architecture {found:?} (membatch runs encoders of model_type bert, mpnet, roberta, xlm-roberta, camembert, distilbert or modernbert; see docs/models.md)")]
    UnsupportedArchitecture {
        /// The architecture named by the file.
        found: String,
    },
    /// The sentence-transformers pooling mode is not one membatch implements.
    #[error("unsupported pooling {found:?} (supported: mean, cls, max, lasttoken)")]
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
    /// `config.json` gives a setting a value no model can have (a zero or
    /// negative size or epsilon).
    #[error("{name} = {found} {reason}")]
    InvalidSetting {
        /// The setting, as `config.json` names it.
        name: String,
        /// Its value in the file.
        found: String,
        /// What it must be.
        reason: String,
    },
    /// `modules.json` lists a module membatch cannot run.
    #[error("unsupported sentence-transformers module {found:?} (supported: Transformer, Pooling, Normalize)")]
    UnsupportedModule {
        /// The module type named by the file.
        found: String,
    },
}

/// An error with its causes on one line, `error: cause: root cause`, as
/// [`Error::report`] returns it (for logs and command-line tools).
#[derive(Debug, Clone, Copy)]
pub struct ErrorReport<'a>(&'a (dyn std::error::Error + 'static));

impl<'a> ErrorReport<'a> {
    /// The chain of any error.
    pub fn new(error: &'a (dyn std::error::Error + 'static)) -> Self {
        ErrorReport(error)
    }
}

impl std::fmt::Display for ErrorReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl Error {
    /// The error and its causes on one line: `model file /m/config.json:
    /// invalid JSON: EOF while parsing a value at line 1 column 0`.
    ///
    /// ```
    /// use membatch::{Error, ModelFileError};
    /// let e = Error::ModelFile {
    ///     path: "/m/tokenizer.json".into(),
    ///     kind: ModelFileError::Missing { hint: String::new() },
    /// };
    /// assert_eq!(e.to_string(), "model file /m/tokenizer.json");
    /// assert_eq!(e.report().to_string(), "model file /m/tokenizer.json: not found");
    /// ```
    pub fn report(&self) -> ErrorReport<'_> {
        ErrorReport(self)
    }

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

/// A duration as people read it: `250 ms`, `1.5 s`.
fn fmt_duration(d: &Duration) -> String {
    if *d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
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
        let msg = e.report().to_string();
        assert!(msg.contains("/m/config.json"), "{msg}");
        assert!(msg.contains("gpt2"), "{msg}");
    }

    #[test]
    fn display_does_not_repeat_the_source() {
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let cause = json.to_string();
        let e = Error::model_file("/m/config.json", ModelFileError::Json(boxed(json)));
        let report = e.report().to_string();
        assert_eq!(
            report.matches(cause.as_str()).count(),
            1,
            "the cause once: {report}"
        );
        assert_eq!(
            report,
            format!("model file /m/config.json: invalid JSON: {cause}")
        );
        for e in [
            Error::Tokenization(boxed(std::io::Error::other("bad bytes"))),
            Error::Inference(boxed(std::io::Error::other("bad bytes"))),
        ] {
            assert!(!e.to_string().contains("bad bytes"), "{e}");
            assert!(
                e.report().to_string().ends_with(": bad bytes"),
                "{}",
                e.report()
            );
        }
    }

    #[test]
    fn library_messages_name_the_library_api_not_tools() {
        let too_large = Error::ModelTooLarge {
            needed: 200 << 20,
            available: 100 << 20,
            budget: 180 << 20,
            precision: Precision::F32,
        }
        .to_string();
        assert!(too_large.contains("Precision::Int8"), "{too_large}");
        let small = Error::BudgetTooSmall {
            needed: 2,
            budget: 1,
            in_use: 1,
            tokens: 256,
        }
        .to_string();
        for msg in [too_large, small] {
            assert!(!msg.contains("--"), "a command-line flag in {msg}");
            assert!(!msg.contains("scripts/"), "a repository script in {msg}");
        }
    }

    #[test]
    fn error_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
