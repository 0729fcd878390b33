//! One run of a [`BatchEmbedder`], batch by batch: [`BatchStream`].

use std::fmt;
use std::time::{Duration, Instant};

use super::metrics::{per_second, Progress};
use super::pipeline::BatchEmbedder;
use super::plan::{bounded_len, longest_first};
use super::retry::Room;
use crate::embedder::Embedder;
use crate::error::{Error, Result};
use crate::pressure::PressureLevel;

/// Texts are counted in chunks of this many, so that a million inputs never
/// hold a million tokenizer encodings at once.
const COUNT_CHUNK: usize = 1024;

impl<E: Embedder> BatchEmbedder<E> {
    /// Counts tokens and returns an iterator of batches, each with the input
    /// indices of its texts, in the order they are embedded (longest first).
    ///
    /// The texts are counted and ordered up front (a few bytes per text);
    /// the vectors are handed out batch by batch, so the caller can write
    /// them out instead of holding them all. Nothing is embedded until the
    /// iterator is advanced; after an error it yields nothing more.
    ///
    /// # Errors
    ///
    /// The embedder's tokenization errors;
    /// [`Error::EmbedderContract`] when it miscounts.
    pub fn stream<'a, S: AsRef<str>>(&'a self, texts: &'a [S]) -> Result<BatchStream<'a, E, S>> {
        let max_seq = self.embedder.max_seq_length();
        let mut ends = Vec::with_capacity(texts.len());
        let mut counts = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(COUNT_CHUNK) {
            let mut slices = Vec::with_capacity(chunk.len());
            for t in chunk {
                let t = t.as_ref();
                let end = bounded_len(&self.embedder, t, max_seq)?;
                ends.push(end);
                slices.push(&t[..end]);
            }
            let chunk_counts = self.embedder.token_counts(&slices)?;
            if chunk_counts.len() != slices.len() {
                return Err(Error::EmbedderContract {
                    method: "token_counts",
                    expected: slices.len(),
                    got: chunk_counts.len(),
                });
            }
            counts.extend(chunk_counts);
        }
        let order = longest_first(&counts);
        let counts = order.iter().map(|&i| counts[i]).collect();
        tracing::info!(texts = texts.len(), "embedding texts");
        Ok(BatchStream::new(self, texts, ends, order, counts))
    }
}

/// One batch of results from [`BatchEmbedder::stream`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EmbeddedBatch {
    /// The input index of each text in this batch.
    pub indices: Vec<usize>,
    /// One vector per text, in the order of `indices`.
    pub embeddings: Vec<Vec<f32>>,
}

/// The batches of one run; see [`BatchEmbedder::stream`].
pub struct BatchStream<'a, E, S> {
    owner: &'a BatchEmbedder<E>,
    texts: &'a [S],
    /// Byte length of each text after the bounded-prefix cut, by input index.
    ends: Vec<usize>,
    /// Input indices, longest first.
    order: Vec<usize>,
    /// Token counts in `order`.
    counts: Vec<usize>,
    pos: usize,
    batches: usize,
    busy: Duration,
    failed: bool,
}

impl<E, S> fmt::Debug for BatchStream<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchStream")
            .field("done", &self.pos)
            .field("total", &self.order.len())
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

impl<'a, E: Embedder, S: AsRef<str>> BatchStream<'a, E, S> {
    fn new(
        owner: &'a BatchEmbedder<E>,
        texts: &'a [S],
        ends: Vec<usize>,
        order: Vec<usize>,
        counts: Vec<usize>,
    ) -> Self {
        BatchStream {
            owner,
            texts,
            ends,
            order,
            counts,
            pos: 0,
            batches: 0,
            busy: Duration::ZERO,
            failed: false,
        }
    }

    /// Adds the time since `started` to this run's and the owner's busy time.
    fn spent(&mut self, started: Instant) {
        let d = started.elapsed();
        self.busy += d;
        self.owner.state.lock().metrics.busy += d;
    }

    /// Texts in this run.
    pub fn total(&self) -> usize {
        self.order.len()
    }

    /// Texts embedded so far in this run.
    pub fn done(&self) -> usize {
        self.pos
    }

    fn next_batch(&mut self) -> Result<EmbeddedBatch> {
        let owner = self.owner;
        loop {
            let started = Instant::now();
            let remaining = &self.counts[self.pos..];
            let padded = remaining[0];
            let Room {
                texts: n,
                estimate,
                guard,
            } = match owner.find_room(remaining) {
                Ok(room) => room,
                Err(e) => {
                    self.spent(started);
                    return Err(e);
                }
            };
            let indices = self.order[self.pos..self.pos + n].to_vec();
            let texts: Vec<&str> = indices
                .iter()
                .map(|&i| &self.texts[i].as_ref()[..self.ends[i]])
                .collect();
            tracing::debug!(
                batch = self.batches + 1,
                texts = n,
                padded_tokens = padded,
                estimate,
                done = self.pos,
                total = self.order.len(),
                "processing batch"
            );
            let result = owner.embedder.embed(&texts);
            let report = guard.finish();
            self.spent(started);
            let embeddings = match result {
                Ok(v) if v.len() == n => v,
                Ok(v) => {
                    return Err(Error::EmbedderContract {
                        method: "embed",
                        expected: n,
                        got: v.len(),
                    })
                }
                Err(e @ Error::MemoryPressure { .. }) if n > 1 => {
                    owner.on_refused(n, &e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let peak_figure = report.figure_before_bytes.saturating_add(report.peak_bytes);
            let peak_level = PressureLevel::for_fraction(
                peak_figure as f64 / report.budget_bytes.max(1) as f64,
                &owner.budget.config().thresholds(),
            );
            let tokens = self.counts[self.pos..self.pos + n].iter().sum();
            owner.on_done(n, padded, tokens, peak_level, &report);
            self.pos += n;
            self.batches += 1;
            if let Some(observer) = &owner.observer {
                observer(&Progress {
                    done: self.pos,
                    total: self.order.len(),
                    batch_size: n,
                    memory_bytes: report.figure_after_bytes,
                    texts_per_second: per_second(self.pos, self.busy),
                });
            }
            if self.pos == self.order.len() {
                tracing::info!(
                    texts = self.pos,
                    batches = self.batches,
                    seconds = self.busy.as_secs_f64(),
                    "completed texts"
                );
            }
            return Ok(EmbeddedBatch {
                indices,
                embeddings,
            });
        }
    }
}

impl<E: Embedder, S: AsRef<str>> Iterator for BatchStream<'_, E, S> {
    type Item = Result<EmbeddedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.order.len() {
            return None;
        }
        let result = self.next_batch();
        self.failed = result.is_err();
        Some(result)
    }
}
