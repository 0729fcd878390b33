//! How batches are sized and retried: [`BatchConfig`] and [`RetryPolicy`].

use std::time::Duration;

use crate::env::{self, Vars};
use crate::error::{Error, Result};

/// What a batch does when memory refuses it and nothing smaller can run.
///
/// A refused batch of several texts is always halved and planned again
/// (the same texts, smaller). A batch of one text that does not fit while
/// other work holds memory (another caller's batch, another thread) waits
/// for that work to end, woken when it does, for at most
/// [`max_wait`](Self::max_wait); then it gives up with
/// [`Error::MemoryPressure`]. When no other work holds memory, waiting
/// cannot help and the run ends with [`Error::BudgetTooSmall`] at once.
///
/// ```
/// use std::time::Duration;
/// use membatch::batch::{BatchConfig, RetryPolicy};
///
/// let config = BatchConfig::builder()
///     .retry(RetryPolicy::waiting(Duration::from_secs(2)))
///     .build()?;
/// assert_eq!(config.retry().max_wait, Duration::from_secs(2));
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The longest a batch waits for memory other work holds. Default 10 s.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::waiting(Duration::from_secs(10))
    }
}

impl RetryPolicy {
    /// Waits at most `max_wait` for memory other work holds.
    pub fn waiting(max_wait: Duration) -> Self {
        RetryPolicy { max_wait }
    }

    /// Never waits: a batch that cannot fit now fails at once.
    pub fn no_wait() -> Self {
        RetryPolicy::waiting(Duration::ZERO)
    }
}

/// How batches are sized and retried.
///
/// Built through [`BatchConfig::builder`] or [`from_env`](Self::from_env),
/// both of which check every setting, so a [`BatchConfig`] always holds
/// sizes a batcher can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    min_batch_size: usize,
    max_batch_size: usize,
    step: usize,
    adaptive: bool,
    max_batch_tokens: Option<usize>,
    retry: RetryPolicy,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            min_batch_size: 8,
            max_batch_size: 64,
            step: 4,
            adaptive: true,
            max_batch_tokens: None,
            retry: RetryPolicy::default(),
        }
    }
}

impl BatchConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BatchConfigBuilder {
        BatchConfig::default().into_builder()
    }

    /// A builder starting from these settings.
    pub fn into_builder(self) -> BatchConfigBuilder {
        BatchConfigBuilder { config: self }
    }

    /// The defaults, overridden by `EMBEDDING_MIN_BATCH_SIZE`,
    /// `EMBEDDING_MAX_BATCH_SIZE`, `EMBEDDING_BATCH_STEP`,
    /// `EMBEDDING_ADAPTIVE_BATCHING`, `EMBEDDING_MAX_BATCH_TOKENS` and
    /// `EMBEDDING_MAX_WAIT_MS` when set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable: not a number, zero, or
    /// a minimum above the maximum.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(env::process)
    }

    /// As [`from_env`](Self::from_env), reading variables through `get`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars::new(get);
        let mut c = BatchConfig::default();
        if let Some(n) = vars.count(env::ENV_MIN_BATCH_SIZE)? {
            c.min_batch_size = n;
        }
        if let Some(n) = vars.count(env::ENV_MAX_BATCH_SIZE)? {
            c.max_batch_size = n;
        }
        if let Some(n) = vars.count(env::ENV_BATCH_STEP)? {
            c.step = n;
        }
        if let Some(on) = vars.flag(env::ENV_ADAPTIVE_BATCHING)? {
            c.adaptive = on;
        }
        if let Some(n) = vars.count(env::ENV_MAX_BATCH_TOKENS)? {
            c.max_batch_tokens = Some(n);
        }
        if let Some(ms) = vars.parsed::<u64>(env::ENV_MAX_WAIT_MS)? {
            c.retry = RetryPolicy::waiting(Duration::from_millis(ms));
        }
        c.check(true)?;
        Ok(c)
    }

    /// The size the batcher starts at, and the floor it grows back from.
    /// Memory pressure may still take a batch below it, down to one text.
    /// Default 8.
    pub fn min_batch_size(&self) -> usize {
        self.min_batch_size
    }

    /// The largest batch. Default 64.
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Growth after each successful batch. Default 4.
    pub fn step(&self) -> usize {
        self.step
    }

    /// `false` runs every batch at `max_batch_size` (memory pressure still
    /// halves it: membatch never trades a crash for a fixed size). Default
    /// `true`.
    pub fn adaptive(&self) -> bool {
        self.adaptive
    }

    /// The most tokens (padding included) one batch may hold, as
    /// text-embeddings-inference's `max_batch_tokens`. Default: no limit.
    pub fn max_batch_tokens(&self) -> Option<usize> {
        self.max_batch_tokens
    }

    /// What a batch does when memory refuses it.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// `env`: name settings by their environment variables in errors.
    fn check(&self, env: bool) -> Result<()> {
        let c = self;
        let name = |field: &'static str, var: &'static str| if env { var } else { field };
        for (field, var, value) in [
            ("min_batch_size", env::ENV_MIN_BATCH_SIZE, c.min_batch_size),
            ("max_batch_size", env::ENV_MAX_BATCH_SIZE, c.max_batch_size),
            ("step", env::ENV_BATCH_STEP, c.step),
            (
                "max_batch_tokens",
                env::ENV_MAX_BATCH_TOKENS,
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
                name("min_batch_size", env::ENV_MIN_BATCH_SIZE),
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

    /// What a batch does when memory refuses it. Default
    /// [`RetryPolicy::default`] (wait up to 10 s for other work).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero size, step or token budget, or a
    /// minimum above the maximum.
    pub fn build(self) -> Result<BatchConfig> {
        self.config.check(false)?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::*;
    use crate::test_util::lookup;

    #[test]
    fn environment_overrides_and_typed_errors() {
        let c = BatchConfig::from_lookup(lookup(&[
            (ENV_MIN_BATCH_SIZE, "4"),
            (ENV_MAX_BATCH_SIZE, " 32 "),
            (ENV_ADAPTIVE_BATCHING, "FALSE"),
            (ENV_MAX_BATCH_TOKENS, "8192"),
            (ENV_MAX_WAIT_MS, "250"),
        ]))
        .unwrap();
        assert_eq!(
            c,
            BatchConfig::builder()
                .min_batch_size(4)
                .max_batch_size(32)
                .step(4)
                .adaptive(false)
                .max_batch_tokens(8192)
                .retry(RetryPolicy::waiting(Duration::from_millis(250)))
                .build()
                .unwrap()
        );
        assert_eq!(
            (
                c.min_batch_size(),
                c.max_batch_size(),
                c.step(),
                c.adaptive()
            ),
            (4, 32, 4, false)
        );
        assert_eq!(c.max_batch_tokens(), Some(8192));
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
            (
                &[(ENV_MAX_WAIT_MS, "soon")][..],
                ENV_MAX_WAIT_MS,
                "invalid digit",
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
        let err = BatchConfig::builder()
            .min_batch_size(9)
            .max_batch_size(8)
            .build();
        assert!(
            matches!(&err, Err(Error::InvalidConfig { name, .. }) if name == "min_batch_size"),
            "{err:?}"
        );
    }
}
