//! [`ServiceConfig`]: the limits and timings of an
//! [`EmbedService`](super::EmbedService).

use std::time::Duration;

use crate::env::{self, Vars};
use crate::error::{Error, Result};

/// The limits and timings of an [`EmbedService`](super::EmbedService).
///
/// Built through [`ServiceConfig::builder`] or [`from_env`](Self::from_env),
/// which check every setting.
///
/// ```
/// use std::time::Duration;
/// use membatch::service::ServiceConfig;
///
/// let config = ServiceConfig::builder()
///     .max_tokens_per_request(8_192)
///     .max_queued_tokens(100_000)
///     .idle_unload(Duration::from_secs(300))
///     .build()?;
/// assert_eq!(config.max_queued_tokens(), 100_000);
/// assert!(ServiceConfig::builder().max_inputs_per_request(0).build().is_err());
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    max_inputs_per_request: usize,
    max_tokens_per_request: usize,
    max_queued_requests: usize,
    max_queued_tokens: usize,
    batch_wait: Duration,
    window_texts: usize,
    idle_unload: Option<Duration>,
    max_consecutive_panics: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            // OpenAI's documented limits for one embeddings request.
            max_inputs_per_request: 2048,
            max_tokens_per_request: 300_000,
            max_queued_requests: 1024,
            max_queued_tokens: 1 << 20,
            batch_wait: Duration::ZERO,
            window_texts: 256,
            idle_unload: None,
            max_consecutive_panics: 3,
        }
    }
}

impl ServiceConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ServiceConfigBuilder {
        ServiceConfig::default().into_builder()
    }

    /// A builder starting from these settings.
    pub fn into_builder(self) -> ServiceConfigBuilder {
        ServiceConfigBuilder { config: self }
    }

    /// The defaults, overridden by `EMBEDDING_MAX_INPUTS_PER_REQUEST`,
    /// `EMBEDDING_MAX_TOKENS_PER_REQUEST`, `EMBEDDING_MAX_QUEUED_REQUESTS`,
    /// `EMBEDDING_MAX_QUEUED_TOKENS`, `EMBEDDING_BATCH_WAIT_MS` and
    /// `EMBEDDING_IDLE_UNLOAD_SECS` when set.
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
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars::new(get);
        let mut c = ServiceConfig::default();
        if let Some(n) = vars.count(env::ENV_MAX_INPUTS_PER_REQUEST)? {
            c.max_inputs_per_request = n;
        }
        if let Some(n) = vars.count(env::ENV_MAX_TOKENS_PER_REQUEST)? {
            c.max_tokens_per_request = n;
        }
        if let Some(n) = vars.count(env::ENV_MAX_QUEUED_REQUESTS)? {
            c.max_queued_requests = n;
        }
        if let Some(n) = vars.count(env::ENV_MAX_QUEUED_TOKENS)? {
            c.max_queued_tokens = n;
        }
        if let Some(ms) = vars.parsed::<u64>(env::ENV_BATCH_WAIT_MS)? {
            c.batch_wait = Duration::from_millis(ms);
        }
        if let Some(s) = vars.parsed::<u64>(env::ENV_IDLE_UNLOAD_SECS)? {
            c.idle_unload = (s > 0).then(|| Duration::from_secs(s));
        }
        c.check(true)?;
        Ok(c)
    }

    /// The most texts one request may hold. Default 2048.
    pub fn max_inputs_per_request(&self) -> usize {
        self.max_inputs_per_request
    }

    /// The most tokens one request may hold. Default 300,000.
    pub fn max_tokens_per_request(&self) -> usize {
        self.max_tokens_per_request
    }

    /// The most requests waiting in the queue. Default 1024.
    pub fn max_queued_requests(&self) -> usize {
        self.max_queued_requests
    }

    /// The most tokens waiting in the queue. Default 1,048,576.
    pub fn max_queued_tokens(&self) -> usize {
        self.max_queued_tokens
    }

    /// How long an idle worker waits for more requests before running a
    /// batch smaller than the batch-size rule allows. Default zero: a
    /// batch starts as soon as there is work (while the model is busy,
    /// requests gather on their own).
    pub fn batch_wait(&self) -> Duration {
        self.batch_wait
    }

    /// The FIFO window, in texts, within which texts are ordered by length:
    /// no request waits behind more than this many texts that arrived
    /// after it. Default 256.
    pub fn window_texts(&self) -> usize {
        self.window_texts
    }

    /// Inactivity after which the model is unloaded (never while work is
    /// queued or running). Default `None`: never.
    pub fn idle_unload(&self) -> Option<Duration> {
        self.idle_unload
    }

    /// Panics in a row after which the worker gives up and every caller
    /// gets [`Error::WorkerFailed`]. Default 3.
    pub fn max_consecutive_panics(&self) -> u32 {
        self.max_consecutive_panics
    }

    fn check(&self, env: bool) -> Result<()> {
        let name = |field: &'static str, var: &'static str| if env { var } else { field };
        for (field, var, value) in [
            (
                "max_inputs_per_request",
                env::ENV_MAX_INPUTS_PER_REQUEST,
                self.max_inputs_per_request,
            ),
            (
                "max_tokens_per_request",
                env::ENV_MAX_TOKENS_PER_REQUEST,
                self.max_tokens_per_request,
            ),
            (
                "max_queued_requests",
                env::ENV_MAX_QUEUED_REQUESTS,
                self.max_queued_requests,
            ),
            (
                "max_queued_tokens",
                env::ENV_MAX_QUEUED_TOKENS,
                self.max_queued_tokens,
            ),
            ("window_texts", "window_texts", self.window_texts),
            (
                "max_consecutive_panics",
                "max_consecutive_panics",
                self.max_consecutive_panics as usize,
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
        if self.max_tokens_per_request > self.max_queued_tokens {
            return Err(Error::invalid_config(
                name("max_tokens_per_request", env::ENV_MAX_TOKENS_PER_REQUEST),
                self.max_tokens_per_request,
                format!(
                    "must not exceed the queue's max_queued_tokens ({}): such a request could never be admitted",
                    self.max_queued_tokens
                ),
            ));
        }
        Ok(())
    }
}

/// Builds a validated [`ServiceConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ServiceConfigBuilder {
    config: ServiceConfig,
}

impl ServiceConfigBuilder {
    /// The most texts one request may hold.
    pub fn max_inputs_per_request(mut self, n: usize) -> Self {
        self.config.max_inputs_per_request = n;
        self
    }

    /// The most tokens one request may hold.
    pub fn max_tokens_per_request(mut self, n: usize) -> Self {
        self.config.max_tokens_per_request = n;
        self
    }

    /// The most requests waiting in the queue.
    pub fn max_queued_requests(mut self, n: usize) -> Self {
        self.config.max_queued_requests = n;
        self
    }

    /// The most tokens waiting in the queue.
    pub fn max_queued_tokens(mut self, n: usize) -> Self {
        self.config.max_queued_tokens = n;
        self
    }

    /// How long an idle worker waits for more requests.
    pub fn batch_wait(mut self, wait: Duration) -> Self {
        self.config.batch_wait = wait;
        self
    }

    /// The FIFO window, in texts, within which texts are length-ordered.
    pub fn window_texts(mut self, n: usize) -> Self {
        self.config.window_texts = n;
        self
    }

    /// Unloads the model after this much inactivity.
    pub fn idle_unload(mut self, after: Duration) -> Self {
        self.config.idle_unload = Some(after);
        self
    }

    /// Panics in a row after which the worker gives up.
    pub fn max_consecutive_panics(mut self, n: u32) -> Self {
        self.config.max_consecutive_panics = n;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero limit, or a request limit above
    /// the queue's.
    pub fn build(self) -> Result<ServiceConfig> {
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
    fn the_environment_sets_the_limits_and_bad_values_name_their_variable() {
        let c = ServiceConfig::from_lookup(lookup(&[
            (ENV_MAX_INPUTS_PER_REQUEST, "16"),
            (ENV_MAX_QUEUED_TOKENS, "5000"),
            (ENV_MAX_TOKENS_PER_REQUEST, "4000"),
            (ENV_BATCH_WAIT_MS, "5"),
            (ENV_IDLE_UNLOAD_SECS, "60"),
        ]))
        .unwrap();
        assert_eq!(c.max_inputs_per_request(), 16);
        assert_eq!(c.max_queued_tokens(), 5000);
        assert_eq!(c.batch_wait(), Duration::from_millis(5));
        assert_eq!(c.idle_unload(), Some(Duration::from_secs(60)));
        let off = ServiceConfig::from_lookup(lookup(&[(ENV_IDLE_UNLOAD_SECS, "0")])).unwrap();
        assert_eq!(off.idle_unload(), None);
        assert_eq!(
            ServiceConfig::from_lookup(lookup(&[])).unwrap(),
            ServiceConfig::default()
        );
        for (pairs, var) in [
            (
                &[(ENV_MAX_QUEUED_REQUESTS, "0")][..],
                ENV_MAX_QUEUED_REQUESTS,
            ),
            (
                &[(ENV_MAX_QUEUED_TOKENS, "100")][..],
                ENV_MAX_TOKENS_PER_REQUEST,
            ),
            (&[(ENV_BATCH_WAIT_MS, "soon")][..], ENV_BATCH_WAIT_MS),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = pairs;
            match ServiceConfig::from_lookup(lookup(pairs)) {
                Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, var),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }
}
