//! One run of a [`BatchEmbedder`], batch by batch: [`BatchStream`].

use std::fmt;
use std::time::{Duration, Instant};

use super::metrics::{per_second, Progress};
use super::pipeline::BatchEmbedder;
use super::plan::{longest_first, measure, Measured};
use super::run::Ran;
use crate::embedder::Embedder;
use crate::error::Result;

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
    /// [`Error::EmbedderContract`](crate::Error::EmbedderContract) when it miscounts.
    pub fn stream<'a, S: AsRef<str>>(&'a self, texts: &'a [S]) -> Result<BatchStream<'a, E, S>> {
        // The run starts now: its counting is memory other callers should
        // wait out rather than call the budget too small.
        let run = RunGuard::new(self);
        let Measured { ends, counts } = measure(&self.embedder, texts)?;
        // Counting's memory is freed: callers waiting for room may fit now.
        self.budget.wake_waiters();
        let order = longest_first(&counts);
        let counts = order.iter().map(|&i| counts[i]).collect();
        tracing::info!(texts = texts.len(), "embedding texts");
        Ok(BatchStream::new(run, texts, ends, order, counts))
    }
}

/// One run of a batcher, counted in its state while it lasts; its end
/// wakes callers waiting for room.
struct RunGuard<'a, E> {
    owner: &'a BatchEmbedder<E>,
}

impl<'a, E> RunGuard<'a, E> {
    fn new(owner: &'a BatchEmbedder<E>) -> Self {
        owner.state.lock().runs += 1;
        RunGuard { owner }
    }
}

impl<E> Drop for RunGuard<'_, E> {
    fn drop(&mut self) {
        self.owner.state.lock().runs -= 1;
        self.owner.budget.wake_waiters();
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
    _run: RunGuard<'a, E>,
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
        run: RunGuard<'a, E>,
        texts: &'a [S],
        ends: Vec<usize>,
        order: Vec<usize>,
        counts: Vec<usize>,
    ) -> Self {
        BatchStream {
            owner: run.owner,
            _run: run,
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
        let started = Instant::now();
        let remaining = &self.order[self.pos..];
        let texts: Vec<&str> = remaining
            .iter()
            .map(|&i| &self.texts[i].as_ref()[..self.ends[i]])
            .collect();
        let ran = owner.embed_next(&texts, &self.counts[self.pos..]);
        self.spent(started);
        let Ran {
            texts: n,
            embeddings,
            figure_after_bytes,
        } = ran?;
        let indices = self.order[self.pos..self.pos + n].to_vec();
        self.pos += n;
        self.batches += 1;
        if let Some(observer) = &owner.observer {
            observer(&Progress {
                done: self.pos,
                total: self.order.len(),
                batch_size: n,
                memory_bytes: figure_after_bytes,
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
        Ok(EmbeddedBatch {
            indices,
            embeddings,
        })
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
