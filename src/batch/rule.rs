//! The batch-size rule ([`AdaptiveBatcher`]) and its settings ([`BatchConfig`]).

use crate::error::{Error, Result};

/// Environment variable for the starting (and normal minimum) batch size.
pub const ENV_MIN_BATCH_SIZE: &str = "EMBEDDING_MIN_BATCH_SIZE";
/// Environment variable for the largest batch size.
pub const ENV_MAX_BATCH_SIZE: &str = "EMBEDDING_MAX_BATCH_SIZE";
/// Environment variable for the growth step after each successful batch.
pub const ENV_BATCH_STEP: &str = "EMBEDDING_BATCH_STEP";
/// Environment variable switching adaptation off (`false`: fixed size).
pub const ENV_ADAPTIVE_BATCHING: &str = "EMBEDDING_ADAPTIVE_BATCHING";
/// Environment variable for the most (padded) tokens in one batch.
pub const ENV_MAX_BATCH_TOKENS: &str = "EMBEDDING_MAX_BATCH_TOKENS";

/// How batches are sized. Validated by [`BatchConfigBuilder::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// The size the batcher starts at, and the floor it grows back from.
    /// Memory pressure may still take a batch below it, down to one text.
    /// Default 8.
    pub min_batch_size: usize,
    /// The largest batch. Default 64.
    pub max_batch_size: usize,
    /// Growth after each successful batch. Default 4.
    pub step: usize,
    /// `false` runs every batch at `max_batch_size` (memory pressure still
    /// halves it: membatch never trades a crash for a fixed size). Default `true`.
    pub adaptive: bool,
    /// The most tokens (padding included) one batch may hold, as
    /// text-embeddings-inference's `max_batch_tokens`. Default: no limit.
    pub max_batch_tokens: Option<usize>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            min_batch_size: 8,
            max_batch_size: 64,
            step: 4,
            adaptive: true,
            max_batch_tokens: None,
        }
    }
}

impl BatchConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BatchConfigBuilder {
        BatchConfigBuilder {
            config: BatchConfig::default(),
        }
    }

    /// The defaults, overridden by `EMBEDDING_MIN_BATCH_SIZE`,
    /// `EMBEDDING_MAX_BATCH_SIZE`, `EMBEDDING_BATCH_STEP`,
    /// `EMBEDDING_ADAPTIVE_BATCHING` and `EMBEDDING_MAX_BATCH_TOKENS` when set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable: not a number, zero, or
    /// a minimum above the maximum.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `get`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut b = Self::builder();
        if let Some(v) = set(ENV_MIN_BATCH_SIZE) {
            b = b.min_batch_size(parse_count(ENV_MIN_BATCH_SIZE, &v)?);
        }
        if let Some(v) = set(ENV_MAX_BATCH_SIZE) {
            b = b.max_batch_size(parse_count(ENV_MAX_BATCH_SIZE, &v)?);
        }
        if let Some(v) = set(ENV_BATCH_STEP) {
            b = b.step(parse_count(ENV_BATCH_STEP, &v)?);
        }
        if let Some(v) = set(ENV_ADAPTIVE_BATCHING) {
            b = b.adaptive(parse_bool(ENV_ADAPTIVE_BATCHING, &v)?);
        }
        if let Some(v) = set(ENV_MAX_BATCH_TOKENS) {
            b = b.max_batch_tokens(parse_count(ENV_MAX_BATCH_TOKENS, &v)?);
        }
        b.build_named(true)
    }
}

fn parse_count(name: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err(Error::invalid_config(name, value, "must be at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Err(Error::invalid_config(name, value, "not a whole number")),
    }
}

/// Parses the usual spellings of a boolean setting.
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

/// Builds a validated [`BatchConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct BatchConfigBuilder {
    config: BatchConfig,
}

impl BatchConfigBuilder {
    /// Starting size and normal floor. Default 8.
    pub fn min_batch_size(mut self, n: usize) -> Self {
        self.config.min_batch_size = n;
        self
    }

    /// Largest batch. Default 64.
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.config.max_batch_size = n;
        self
    }

    /// Growth after each successful batch. Default 4.
    pub fn step(mut self, n: usize) -> Self {
        self.config.step = n;
        self
    }

    /// Adaptation on (default) or off (fixed at `max_batch_size`).
    pub fn adaptive(mut self, on: bool) -> Self {
        self.config.adaptive = on;
        self
    }

    /// A fixed batch size: min and max both `n`, adaptation off.
    pub fn fixed(self, n: usize) -> Self {
        self.min_batch_size(n).max_batch_size(n).adaptive(false)
    }

    /// The most padded tokens per batch. Default: no limit.
    pub fn max_batch_tokens(mut self, tokens: usize) -> Self {
        self.config.max_batch_tokens = Some(tokens);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero size, step or token budget, or a
    /// minimum above the maximum.
    pub fn build(self) -> Result<BatchConfig> {
        self.build_named(false)
    }

    /// `env`: name settings by their environment variables in errors.
    fn build_named(self, env: bool) -> Result<BatchConfig> {
        self.config.check(env)?;
        Ok(self.config)
    }
}

impl BatchConfig {
    /// Checks the settings, as [`BatchConfigBuilder::build`] does.
    ///
    /// # Errors
    ///
    /// As [`BatchConfigBuilder::build`].
    pub fn validate(&self) -> Result<()> {
        self.check(false)
    }

    fn check(&self, env: bool) -> Result<()> {
        let c = self;
        let name = |field: &'static str, var: &'static str| if env { var } else { field };
        for (field, var, value) in [
            ("min_batch_size", ENV_MIN_BATCH_SIZE, c.min_batch_size),
            ("max_batch_size", ENV_MAX_BATCH_SIZE, c.max_batch_size),
            ("step", ENV_BATCH_STEP, c.step),
            (
                "max_batch_tokens",
                ENV_MAX_BATCH_TOKENS,
                c.max_batch_tokens.unwrap_or(1),
            ),
        ] {
            if value == 0 {
                return Err(Error::invalid_config(
                    name(field, var),
                    0,
                    "must be at least 1",
                ));
            }
        }
        if c.min_batch_size > c.max_batch_size {
            return Err(Error::invalid_config(
                name("min_batch_size", ENV_MIN_BATCH_SIZE),
                c.min_batch_size,
                format!(
                    "must not exceed the maximum batch size ({})",
                    c.max_batch_size
                ),
            ));
        }
        Ok(())
    }
}

/// The batch-size rule, as a plain value: no clock, no memory reads.
///
/// Starts at `min_batch_size`; each successful batch adds `step`, up to
/// `max_batch_size`; memory pressure halves the size, never below one.
/// After pressure, growth resumes by `step` from wherever it landed. With
/// adaptation off, the size is `max_batch_size` except while memory
/// pressure holds it lower.
///
/// ```
/// use membatch::batch::{AdaptiveBatcher, BatchConfig};
///
/// let mut b = AdaptiveBatcher::new(&BatchConfig::default());
/// assert_eq!(b.size(), 8);
/// assert_eq!(b.on_success(), 12);
/// assert_eq!(b.on_success(), 16);
/// assert_eq!(b.on_pressure(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveBatcher {
    size: usize,
    min: usize,
    max: usize,
    step: usize,
    adaptive: bool,
}

impl AdaptiveBatcher {
    /// The rule at its starting size.
    pub fn new(config: &BatchConfig) -> Self {
        // Clamp defensively: a hand-built (unvalidated) config must not make
        // the rule produce a zero size.
        let max = config.max_batch_size.max(1);
        let min = config.min_batch_size.clamp(1, max);
        AdaptiveBatcher {
            size: if config.adaptive { min } else { max },
            min,
            max,
            step: config.step,
            adaptive: config.adaptive,
        }
    }

    /// The size the next batch may have.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A batch succeeded without pressure: grow by `step` (up to the
    /// maximum), or return to the fixed size. Returns the new size.
    pub fn on_success(&mut self) -> usize {
        self.size = if self.adaptive {
            self.size.saturating_add(self.step).min(self.max)
        } else {
            self.max
        };
        self.size
    }

    /// Memory pressure: halve, never below one. Returns the new size.
    pub fn on_pressure(&mut self) -> usize {
        self.on_pressure_after(self.size)
    }

    /// Memory pressure caused by a batch of `batch` texts, which memory or
    /// token limits may have made smaller than the rule's size: halve that
    /// batch (never below one), so the next one is really smaller.
    pub fn on_pressure_after(&mut self, batch: usize) -> usize {
        self.size = (self.size.min(batch) / 2).max(1);
        self.size
    }

    /// Whether the size is below its normal floor (pressure took it there).
    pub fn is_shrunk(&self) -> bool {
        self.size < if self.adaptive { self.min } else { self.max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::lookup;

    #[test]
    fn grows_by_step_to_the_maximum_and_halves_on_pressure() {
        let mut b = AdaptiveBatcher::new(&BatchConfig::default());
        let mut trace = vec![b.size()];
        while b.size() < 64 {
            trace.push(b.on_success());
        }
        assert_eq!(
            trace,
            [8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64]
        );
        assert_eq!(b.on_success(), 64, "stays at the maximum");
        let halves: Vec<_> = (0..8).map(|_| b.on_pressure()).collect();
        assert_eq!(halves, [32, 16, 8, 4, 2, 1, 1, 1], "never below one");
        assert!(b.is_shrunk());
        assert_eq!(b.on_success(), 5, "growth resumes by step");
        let mut b = AdaptiveBatcher::new(&BatchConfig::default());
        b.on_success();
        assert_eq!(
            b.on_pressure_after(5),
            2,
            "halves the batch that ran, not the rule"
        );
        assert_eq!(b.on_pressure_after(40), 1);
    }

    #[test]
    fn a_step_that_overshoots_stops_at_the_maximum() {
        let c = BatchConfig::builder()
            .min_batch_size(3)
            .max_batch_size(10)
            .step(4)
            .build()
            .unwrap();
        let mut b = AdaptiveBatcher::new(&c);
        assert_eq!(
            [b.on_success(), b.on_success(), b.on_success()],
            [7, 10, 10]
        );
    }

    #[test]
    fn fixed_size_stays_at_max_and_returns_after_pressure() {
        let c = BatchConfig::builder().fixed(16).build().unwrap();
        let mut b = AdaptiveBatcher::new(&c);
        assert_eq!(b.size(), 16);
        assert_eq!(b.on_success(), 16);
        assert_eq!(b.on_pressure(), 8);
        assert_eq!(b.on_success(), 16);
    }

    #[test]
    fn environment_overrides_and_typed_errors() {
        let c = BatchConfig::from_lookup(lookup(&[
            (ENV_MIN_BATCH_SIZE, "4"),
            (ENV_MAX_BATCH_SIZE, " 32 "),
            (ENV_ADAPTIVE_BATCHING, "FALSE"),
            (ENV_MAX_BATCH_TOKENS, "8192"),
        ]))
        .unwrap();
        assert_eq!(
            c,
            BatchConfig {
                min_batch_size: 4,
                max_batch_size: 32,
                step: 4,
                adaptive: false,
                max_batch_tokens: Some(8192),
            }
        );
        assert_eq!(
            BatchConfig::from_lookup(lookup(&[])).unwrap(),
            BatchConfig::default()
        );
        for (pairs, var, why) in [
            (
                &[(ENV_MIN_BATCH_SIZE, "0")][..],
                ENV_MIN_BATCH_SIZE,
                "at least 1",
            ),
            (
                &[(ENV_MAX_BATCH_SIZE, "many")][..],
                ENV_MAX_BATCH_SIZE,
                "whole number",
            ),
            (
                &[(ENV_MAX_BATCH_SIZE, "-3")][..],
                ENV_MAX_BATCH_SIZE,
                "whole number",
            ),
            (
                &[(ENV_MIN_BATCH_SIZE, "65")][..],
                ENV_MIN_BATCH_SIZE,
                "must not exceed the maximum batch size (64)",
            ),
            (
                &[(ENV_ADAPTIVE_BATCHING, "maybe")][..],
                ENV_ADAPTIVE_BATCHING,
                "true or false",
            ),
            (
                &[(ENV_MAX_BATCH_TOKENS, "0")][..],
                ENV_MAX_BATCH_TOKENS,
                "at least 1",
            ),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = pairs;
            match BatchConfig::from_lookup(lookup(pairs)) {
                Err(Error::InvalidConfig { name, reason, .. }) => {
                    assert_eq!(name, var);
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{pairs:?}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn builder_names_fields() {
        let err = BatchConfig::builder().step(0).build().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig { name, .. } if name == "step"),
            "{err}"
        );
    }
}
