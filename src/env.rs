//! The one reader of environment variables, and the rules every variable
//! follows: an empty or blank value counts as unset, surrounding whitespace
//! is ignored, and a value that cannot be used is an
//! [`Error::InvalidConfig`] naming the variable, never ignored.
//!
//! [`Config`](crate::Config)'s settings come from the table in
//! [`settings`](crate::settings); the two process-level variables
//! (`MEMBATCH_HOME`, `MEMBATCH_NO_VNNI`) are here.

use crate::error::{Error, Result};

/// membatch's data directory (default `$XDG_CACHE_HOME/membatch`, else
/// `~/.cache/membatch`): not a [`Config`](crate::Config) setting, it says
/// where the process keeps its files.
pub(crate) const HOME: &str = "MEMBATCH_HOME";

/// Set (any value): int8 never uses the VNNI kernel (docs/configuration.md).
#[cfg(all(feature = "candle", target_arch = "x86_64"))]
pub(crate) fn no_vnni() -> bool {
    std::env::var_os("MEMBATCH_NO_VNNI").is_some()
}

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
        assert_eq!(v.text("B").as_deref(), Some("7"));
    }

    #[test]
    fn bad_values_say_why() {
        let reason = |r: Result<_>| match r {
            Err(Error::InvalidConfig { name, reason, .. }) => (name, reason),
            other => panic!("{:?}", other.map(|_: usize| ())),
        };
        assert_eq!(reason(parse_count("N", "0")).1, "must be at least 1");
        assert!(reason(parse_count("M", "-3")).1.contains("whole number"));
        let (name, why) = reason(parse_bool("F", "maybe").map(|_| 0));
        assert_eq!(name, "F");
        assert!(why.contains("true or false"), "{why}");
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
