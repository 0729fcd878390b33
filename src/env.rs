//! Settings from environment variables: every variable membatch reads, and
//! the one reader they all go through.
//!
//! Each configuration type reads its own variables
//! ([`BatchConfig::from_env`](crate::batch::BatchConfig::from_env),
//! [`MemoryConfig::from_env`](crate::memory::MemoryConfig::from_env),
//! [`ModelConfig::from_env`](crate::ModelConfig::from_env), or all of them
//! through [`Config::from_env`](crate::Config::from_env)); the names are
//! here, and so are the rules every variable follows: an empty or blank
//! value counts as unset, surrounding whitespace is ignored, and a value
//! that cannot be used is an [`Error::InvalidConfig`] naming the variable,
//! never ignored. `docs/configuration.md` lists them with their defaults.

use std::fmt::Display;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The starting (and normal minimum) batch size.
pub const ENV_MIN_BATCH_SIZE: &str = "EMBEDDING_MIN_BATCH_SIZE";
/// The largest batch size.
pub const ENV_MAX_BATCH_SIZE: &str = "EMBEDDING_MAX_BATCH_SIZE";
/// The growth step after each successful batch.
pub const ENV_BATCH_STEP: &str = "EMBEDDING_BATCH_STEP";
/// Switches adaptation off (`false`: a fixed size).
pub const ENV_ADAPTIVE_BATCHING: &str = "EMBEDDING_ADAPTIVE_BATCHING";
/// The most (padded) tokens in one batch.
pub const ENV_MAX_BATCH_TOKENS: &str = "EMBEDDING_MAX_BATCH_TOKENS";
/// How long, in milliseconds, a batch waits for memory other work holds
/// before it gives up with [`Error::MemoryPressure`].
pub const ENV_MAX_WAIT_MS: &str = "EMBEDDING_MAX_WAIT_MS";
/// The memory budget as a percentage of the effective limit.
pub const ENV_MAX_MEMORY_PERCENT: &str = "EMBEDDING_MAX_MEMORY_PERCENT";
/// The memory budget as an absolute size (`512MiB`, `2GB`) or a percentage.
pub const ENV_MAX_MEMORY: &str = "EMBEDDING_MAX_MEMORY";
/// The model to run: a directory or a Hugging Face repo id.
pub const ENV_MODEL: &str = "MEMBATCH_MODEL";
/// The number of dedicated compute threads.
pub const ENV_THREADS: &str = "EMBEDDING_THREADS";
/// The most tokens of one text the model sees.
pub const ENV_MAX_SEQ_LENGTH: &str = "EMBEDDING_MAX_SEQ_LENGTH";
/// Forces L2 normalisation on or off.
pub const ENV_NORMALIZE: &str = "EMBEDDING_NORMALIZE";
/// How the weights are held (`f32`, `int8`).
pub const ENV_PRECISION: &str = "EMBEDDING_PRECISION";
/// The most texts one request to a service may hold.
pub const ENV_MAX_INPUTS_PER_REQUEST: &str = "EMBEDDING_MAX_INPUTS_PER_REQUEST";
/// The most tokens one request to a service may hold.
pub const ENV_MAX_TOKENS_PER_REQUEST: &str = "EMBEDDING_MAX_TOKENS_PER_REQUEST";
/// The most requests a service's queue holds.
pub const ENV_MAX_QUEUED_REQUESTS: &str = "EMBEDDING_MAX_QUEUED_REQUESTS";
/// The most tokens a service's queue holds.
pub const ENV_MAX_QUEUED_TOKENS: &str = "EMBEDDING_MAX_QUEUED_TOKENS";
/// How long, in milliseconds, an idle service waits for more requests
/// before running a small batch (0: never waits).
pub const ENV_BATCH_WAIT_MS: &str = "EMBEDDING_BATCH_WAIT_MS";
/// Seconds of inactivity after which a service unloads its model (unset or
/// 0: never).
pub const ENV_IDLE_UNLOAD_SECS: &str = "EMBEDDING_IDLE_UNLOAD_SECS";
/// membatch's data directory (default `$XDG_CACHE_HOME/membatch`, else
/// `~/.cache/membatch`).
pub const ENV_HOME: &str = "MEMBATCH_HOME";

/// Reads variables through a lookup function (the process environment, or
/// a fixed set in tests) by the rules in the module docs.
pub(crate) struct Vars<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub(crate) fn new(get: F) -> Self {
        Vars { get }
    }

    /// The trimmed value, or `None` when unset or blank.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The value run through `parse`, which names `name` in its errors.
    pub(crate) fn with<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        self.text(name).map(|v| parse(name, &v)).transpose()
    }

    /// A whole number of at least 1.
    pub(crate) fn count(&self, name: &str) -> Result<Option<usize>> {
        self.with(name, parse_count)
    }

    /// A boolean in one of its usual spellings.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>> {
        self.with(name, parse_bool)
    }

    /// A value of any type that parses from text; its parse error becomes
    /// the reason.
    pub(crate) fn parsed<T>(&self, name: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.with(name, |name, v| {
            v.parse()
                .map_err(|e: T::Err| Error::invalid_config(name, v, e.to_string()))
        })
    }
}

/// The process environment as a lookup.
pub(crate) fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The process environment, read by the module's rules.
pub(crate) fn vars() -> Vars<fn(&str) -> Option<String>> {
    Vars::new(process)
}

/// A whole number of at least 1, naming `name` in the error.
pub(crate) fn parse_count(name: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err(Error::invalid_config(name, value, "must be at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Err(Error::invalid_config(
            name,
            value,
            "not a whole number (at least 1)",
        )),
    }
}

/// The usual spellings of a boolean: 1/0, true/false, yes/no, on/off.
pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid_config(
            name,
            value,
            "expected true or false (also 1/0, yes/no, on/off)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::lookup;

    #[test]
    fn blank_is_unset_and_values_are_trimmed() {
        let v = Vars::new(lookup(&[("A", "  "), ("B", " 7 "), ("C", "")]));
        assert_eq!(v.text("A"), None);
        assert_eq!(v.text("C"), None);
        assert_eq!(v.text("missing"), None);
        assert_eq!(v.count("B").unwrap(), Some(7));
        assert_eq!(v.count("A").unwrap(), None);
    }

    #[test]
    fn bad_values_name_the_variable_and_say_why() {
        let v = Vars::new(lookup(&[
            ("N", "0"),
            ("M", "-3"),
            ("F", "maybe"),
            ("P", "int4"),
        ]));
        let reason = |r: Result<_>| match r {
            Err(Error::InvalidConfig { name, reason, .. }) => (name, reason),
            other => panic!("{:?}", other.map(|_: Option<()>| ())),
        };
        assert_eq!(reason(v.count("N").map(|_| None)).1, "must be at least 1");
        assert!(reason(v.count("M").map(|_| None))
            .1
            .contains("whole number"));
        let (name, why) = reason(v.flag("F").map(|_| None));
        assert_eq!(name, "F");
        assert!(why.contains("true or false"), "{why}");
        let (name, why) = reason(v.parsed::<crate::precision::Precision>("P").map(|_| None));
        assert_eq!(name, "P");
        assert!(why.contains("f32 or int8"), "{why}");
    }

    #[test]
    fn booleans_in_every_spelling() {
        for t in ["1", "true", "YES", "On"] {
            assert!(parse_bool("x", t).unwrap(), "{t}");
        }
        for f in ["0", "false", "no", "OFF"] {
            assert!(!parse_bool("x", f).unwrap(), "{f}");
        }
    }
}
