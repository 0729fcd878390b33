//! [`ServiceConfig`]: the limits and timings of an
//! [`EmbedService`](super::EmbedService).

use std::time::Duration;

use crate::error::{Error, Result};

/// The limits and timings of an [`EmbedService`](super::EmbedService).
///
/// Built through [`ServiceConfig::builder`] (or [`Config`](crate::Config)),
/// which checks every setting.
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

    fn check(&self) -> Result<()> {
        for (field, value) in [
            ("max_inputs_per_request", self.max_inputs_per_request),
            ("max_tokens_per_request", self.max_tokens_per_request),
            ("max_queued_requests", self.max_queued_requests),
            ("max_queued_tokens", self.max_queued_tokens),
            ("window_texts", self.window_texts),
            (
                "max_consecutive_panics",
                self.max_consecutive_panics as usize,
            ),
        ] {
            if value == 0 {
                return Err(Error::invalid_config(field, 0, "must be at least 1"));
            }
        }
        if self.max_tokens_per_request > self.max_queued_tokens {
            return Err(Error::invalid_config(
                "max_tokens_per_request",
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

    /// Unloads the model after this much inactivity (`None`: never).
    pub fn idle_unload(mut self, after: impl Into<Option<Duration>>) -> Self {
        self.config.idle_unload = after.into();
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
        self.config.check()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_limit_above_the_queues_is_refused() {
        let c = ServiceConfig::builder()
            .max_inputs_per_request(16)
            .max_queued_tokens(5000)
            .max_tokens_per_request(4000)
            .batch_wait(Duration::from_millis(5))
            .idle_unload(Duration::from_secs(60))
            .build()
            .unwrap();
        assert_eq!(c.max_inputs_per_request(), 16);
        assert_eq!(c.idle_unload(), Some(Duration::from_secs(60)));
        let off = c.into_builder().idle_unload(None).build().unwrap();
        assert_eq!(off.idle_unload(), None);
        for (b, field) in [
            (
                ServiceConfig::builder().max_queued_requests(0),
                "max_queued_requests",
            ),
            (
                ServiceConfig::builder().max_queued_tokens(100),
                "max_tokens_per_request",
            ),
        ] {
            match b.build() {
                Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
