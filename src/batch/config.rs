//! How batches are sized and retried: [`BatchConfig`] and [`RetryPolicy`].

use std::time::Duration;

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
/// Built through [`BatchConfig::builder`] (or [`Config`](crate::Config)),
/// which checks every setting, so a [`BatchConfig`] always holds
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

    /// Checks the settings; errors name the field (a setting read from
    /// the environment or a flag is renamed for it: `Config`).
    fn check(&self) -> Result<()> {
        let c = self;
        for (field, value) in [
            ("min_batch_size", c.min_batch_size),
            ("max_batch_size", c.max_batch_size),
            ("step", c.step),
            ("max_batch_tokens", c.max_batch_tokens.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(Error::invalid_config(field, 0, "must be at least 1"));
            }
        }
        if c.min_batch_size > c.max_batch_size {
            return Err(Error::invalid_config(
                "min_batch_size",
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
        self.config.check()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_sets_every_field() {
        let c = BatchConfig::builder()
            .min_batch_size(4)
            .max_batch_size(32)
            .adaptive(false)
            .max_batch_tokens(8192)
            .retry(RetryPolicy::waiting(Duration::from_millis(250)))
            .build()
            .unwrap();
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
        assert_eq!(c.retry().max_wait, Duration::from_millis(250));
        let err = BatchConfig::builder()
            .min_batch_size(65)
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("must not exceed the maximum batch size (64)"),
            "{err}"
        );
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
