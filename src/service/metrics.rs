//! What an [`EmbedService`](super::EmbedService) reports:
//! [`ServiceMetrics`], with [`Histogram`]s a server can export.

use std::time::Duration;

use crate::embedder::ModelState;
use crate::memory::MemoryReading;

/// Counts of observations in fixed buckets, with their sum: what a
/// Prometheus histogram exports, and enough for approximate quantiles.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Histogram {
    /// Upper bounds of the buckets, rising; values above the last fall in
    /// an implicit `+Inf` bucket.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), one more than `bounds`
    /// (the last is `+Inf`).
    pub counts: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The largest observation.
    pub max: f64,
}

impl Histogram {
    /// Buckets growing by `factor` from `first` up to `last` (inclusive).
    pub fn exponential(first: f64, factor: f64, last: f64) -> Self {
        let mut bounds = vec![first];
        while let Some(&b) = bounds.last() {
            if b >= last || factor <= 1.0 {
                break;
            }
            bounds.push(b * factor);
        }
        Histogram {
            counts: vec![0; bounds.len() + 1],
            bounds,
            count: 0,
            sum: 0.0,
            max: 0.0,
        }
    }

    /// Records `value`.
    pub fn observe(&mut self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i] += 1;
        self.count += 1;
        self.sum += value;
        self.max = self.max.max(value);
    }

    /// The mean, 0 with no observations.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The upper bound of the bucket holding the `q` quantile (0 to 1):
    /// an estimate that errs high by at most one bucket, and never above
    /// the largest observation.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return self
                    .bounds
                    .get(i)
                    .copied()
                    .unwrap_or(self.max)
                    .min(self.max);
            }
        }
        self.max
    }
}

/// What an unload gave back; from [`EmbedService::unload`](super::EmbedService::unload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnloadReport {
    /// Whether the model was loaded (and is now freed).
    pub freed: bool,
    /// The process's RSS before and after, where known.
    pub rss_before_bytes: Option<u64>,
    /// See `rss_before_bytes`.
    pub rss_after_bytes: Option<u64>,
    /// The budget's figure (cgroup working set or RSS) before and after.
    pub figure_before_bytes: u64,
    /// See `figure_before_bytes`.
    pub figure_after_bytes: u64,
}

/// Requests refused at admission, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusals {
    /// The queue was full ([`Error::Overloaded`](crate::Error::Overloaded)).
    pub overloaded: u64,
    /// Memory was critical ([`Error::MemoryCritical`](crate::Error::MemoryCritical)).
    pub memory_critical: u64,
    /// Over a per-request limit ([`Error::RequestTooLarge`](crate::Error::RequestTooLarge)).
    pub too_large: u64,
    /// A text longer than the model reads, with truncation refused
    /// ([`Error::TextTooLong`](crate::Error::TextTooLong)).
    pub text_too_long: u64,
    /// The service was shut down or its worker had failed.
    pub closed: u64,
}

/// Which model a request's texts run through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Texts to embed.
    Embed,
    /// (query, document) pairs to score.
    Rerank,
}

/// What one kind of request (embeddings, or reranks) made the service do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkCounts {
    /// Requests accepted.
    pub requests: u64,
    /// Batches run.
    pub batches: u64,
    /// Texts (or pairs) run.
    pub texts: u64,
    /// Their tokens.
    pub tokens: u64,
}

/// A snapshot of an [`EmbedService`](super::EmbedService), for a server to
/// export.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceMetrics {
    /// Requests waiting, not yet taken into a batch.
    pub queued_requests: usize,
    /// Their tokens.
    pub queued_tokens: usize,
    /// Requests accepted (of both kinds).
    pub accepted: u64,
    /// Embedding requests: accepted, batches, texts, tokens.
    pub embeddings: WorkCounts,
    /// Rerank requests: accepted, batches, pairs, tokens.
    pub reranks: WorkCounts,
    /// Requests answered with vectors (or scores).
    pub completed: u64,
    /// Accepted requests answered with an error (a failed batch, a closed
    /// service).
    pub failed: u64,
    /// Accepted requests whose caller gave up before they ran (skipped).
    pub cancelled: u64,
    /// Refusals at admission, by reason.
    pub refused: Refusals,
    /// Batches run.
    pub batches: u64,
    /// Texts embedded.
    pub texts: u64,
    /// Tokens embedded.
    pub tokens: u64,
    /// Texts per batch.
    pub batch_texts: Histogram,
    /// Tokens per batch.
    pub batch_tokens: Histogram,
    /// Requests with texts in each batch (more than one: batches merged
    /// callers).
    pub batch_requests: Histogram,
    /// Seconds from a request's arrival to its first batch.
    pub queue_seconds: Histogram,
    /// Seconds per batch's forward pass.
    pub inference_seconds: Histogram,
    /// Panics contained.
    pub panics: u64,
    /// The batch size the rule allows next.
    pub batch_size: usize,
    /// The batch size the reranker's rule allows next, when the service
    /// has a reranker.
    pub rerank_batch_size: Option<usize>,
    /// The model's state.
    pub model: ModelState,
    /// Loads and unloads so far.
    pub unloads: u64,
    /// Memory now.
    pub memory: MemoryReading,
    /// Whether the worker is still serving (false once it failed or the
    /// service shut down).
    pub serving: bool,
}

/// The counters the service keeps between snapshots.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    pub(crate) accepted: u64,
    pub(crate) embeddings: WorkCounts,
    pub(crate) reranks: WorkCounts,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) refused: Refusals,
    pub(crate) batches: u64,
    pub(crate) texts: u64,
    pub(crate) tokens: u64,
    pub(crate) panics: u64,
    pub(crate) unloads: u64,
    pub(crate) batch_texts: Histogram,
    pub(crate) batch_tokens: Histogram,
    pub(crate) batch_requests: Histogram,
    pub(crate) queue_seconds: Histogram,
    pub(crate) inference_seconds: Histogram,
    /// Tokens per second of recent batches (a moving average), to tell a
    /// refused caller when to come back.
    pub(crate) tokens_per_second: Option<f64>,
}

impl Default for Counters {
    fn default() -> Self {
        // Seconds from 100 µs to ~2 minutes; sizes in powers of two.
        let seconds = || Histogram::exponential(1e-4, 2.0, 120.0);
        Counters {
            accepted: 0,
            embeddings: WorkCounts::default(),
            reranks: WorkCounts::default(),
            completed: 0,
            failed: 0,
            cancelled: 0,
            refused: Refusals::default(),
            batches: 0,
            texts: 0,
            tokens: 0,
            panics: 0,
            unloads: 0,
            batch_texts: Histogram::exponential(1.0, 2.0, 1024.0),
            batch_tokens: Histogram::exponential(16.0, 2.0, (1 << 20) as f64),
            batch_requests: Histogram::exponential(1.0, 2.0, 1024.0),
            queue_seconds: seconds(),
            inference_seconds: seconds(),
            tokens_per_second: None,
        }
    }
}

impl Counters {
    /// The counts of one kind of work.
    fn of(&mut self, kind: Kind) -> &mut WorkCounts {
        match kind {
            Kind::Embed => &mut self.embeddings,
            Kind::Rerank => &mut self.reranks,
        }
    }

    /// Records an accepted request of `kind`.
    pub(crate) fn accepted(&mut self, kind: Kind) {
        self.accepted += 1;
        self.of(kind).requests += 1;
    }

    /// Records a batch of `kind` of `texts` texts and `tokens` tokens from
    /// `requests` requests that ran in `took`.
    pub(crate) fn batch(
        &mut self,
        kind: Kind,
        texts: usize,
        tokens: usize,
        requests: usize,
        took: Duration,
    ) {
        let counts = self.of(kind);
        counts.batches += 1;
        counts.texts += texts as u64;
        counts.tokens += tokens as u64;
        self.batches += 1;
        self.texts += texts as u64;
        self.tokens += tokens as u64;
        self.batch_texts.observe(texts as f64);
        self.batch_tokens.observe(tokens as f64);
        self.batch_requests.observe(requests as f64);
        let seconds = took.as_secs_f64();
        self.inference_seconds.observe(seconds);
        if seconds > 0.0 {
            let rate = tokens as f64 / seconds;
            self.tokens_per_second = Some(match self.tokens_per_second {
                Some(r) => 0.8 * r + 0.2 * rate,
                None => rate,
            });
        }
    }

    /// When a queue of `tokens` tokens will have drained, by the recent rate
    /// (one second while nothing has been measured), between 100 ms and
    /// one minute.
    pub(crate) fn drain_time(&self, tokens: usize) -> Duration {
        let seconds = match self.tokens_per_second {
            Some(rate) if rate > 0.0 => tokens as f64 / rate,
            _ => 1.0,
        };
        Duration::from_secs_f64(seconds.clamp(0.1, 60.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_in_their_buckets_and_quantiles_follow() {
        let mut h = Histogram::exponential(1.0, 2.0, 8.0);
        assert_eq!(h.bounds, vec![1.0, 2.0, 4.0, 8.0]);
        for v in [0.5, 1.0, 1.5, 3.0, 3.0, 7.0, 100.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 1, 2, 1, 1]);
        assert_eq!(h.count, 7);
        assert_eq!(h.max, 100.0);
        assert_eq!(h.quantile(0.5), 4.0);
        assert_eq!(h.quantile(1.0), 100.0);
        assert_eq!(h.quantile(0.0), 1.0);
        assert!((h.mean() - 116.0 / 7.0).abs() < 1e-12);
        assert_eq!(Histogram::exponential(1.0, 2.0, 8.0).quantile(0.5), 0.0);
    }

    #[test]
    fn the_drain_estimate_follows_the_measured_rate() {
        let mut c = Counters::default();
        assert_eq!(c.drain_time(1000), Duration::from_secs(1));
        c.batch(Kind::Rerank, 10, 2000, 3, Duration::from_secs(1));
        assert_eq!(
            (c.reranks.batches, c.reranks.texts, c.embeddings.batches),
            (1, 10, 0)
        );
        assert_eq!(c.tokens_per_second, Some(2000.0));
        assert_eq!(c.drain_time(4000), Duration::from_secs(2));
        assert_eq!(c.drain_time(1), Duration::from_millis(100));
        assert_eq!(c.drain_time(1 << 40), Duration::from_secs(60));
    }
}
