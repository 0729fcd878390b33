//! One run of a [`BatchEmbedder`], batch by batch: [`BatchStream`].

use std::fmt;
use std::time::{Duration, Instant};

use super::metrics::{per_second, Progress};
use super::pipeline::BatchEmbedder;
use super::plan::{longest_first, tokenize, TOKENIZE_CHUNK};
use super::run::Ran;
use crate::embedder::{EmbedOptions, Embedder, Tokens, WithOptions};
use crate::error::Error;
use crate::error::Result;

/// Texts a run tokenizes and orders at a time: a window of tokens (about
/// 4 bytes each) is all a run holds besides the vectors it hands out.
const WINDOW_TEXTS: usize = 4 * TOKENIZE_CHUNK;

impl<E: Embedder> BatchEmbedder<E> {
    /// Returns an iterator of batches, each with the input indices of its
    /// texts, in the order they are embedded.
    ///
    /// Texts are tokenized once, a window of 4096 at a time, and each
    /// window is embedded longest first; the vectors are handed out batch
    /// by batch, so the caller can write them out instead of holding them
    /// all. The first window is tokenized here; after an error the
    /// iterator yields nothing more.
    ///
    /// # Errors
    ///
    /// The embedder's tokenization errors (for later windows, from the
    /// iterator);
    /// [`Error::EmbedderContract`](crate::Error::EmbedderContract) when it
    /// returns another number of results than texts.
    pub fn stream<'a, S: AsRef<str>>(&'a self, texts: &'a [S]) -> Result<BatchStream<'a, E, S>> {
        self.stream_with(texts, &EmbedOptions::default())
    }

    /// As [`stream`](Self::stream), embedding as `options` say: behind the
    /// model's prompt they choose (counted in every batch's tokens), cut to
    /// their dimensions, refusing long texts when they do.
    ///
    /// # Errors
    ///
    /// As [`stream`](Self::stream); [`Error::InvalidConfig`] for a prompt
    /// the model does not define or dimensions it does not have;
    /// [`Error::TextTooLong`] (from the window that holds it) for a text
    /// too long when the options refuse them.
    pub fn stream_with<'a, S: AsRef<str>>(
        &'a self,
        texts: &'a [S],
        options: &EmbedOptions,
    ) -> Result<BatchStream<'a, E, S>> {
        options.check(&self.embedder)?;
        tracing::info!(texts = texts.len(), "embedding texts");
        let mut stream = BatchStream::new(RunGuard::new(self), texts, options.clone());
        stream.next_window()?;
        Ok(stream)
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
    options: EmbedOptions,
    /// The input index where the next window starts.
    window_end: usize,
    /// The current window's texts as input indices, longest first.
    order: Vec<usize>,
    /// Their tokens, in `order`.
    tokens: Vec<Tokens>,
    /// Of `order`, those embedded.
    pos: usize,
    /// Texts embedded in this run.
    done: usize,
    batches: usize,
    busy: Duration,
    failed: bool,
}

impl<E, S> fmt::Debug for BatchStream<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchStream")
            .field("done", &self.done)
            .field("total", &self.texts.len())
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

impl<'a, E: Embedder, S: AsRef<str>> BatchStream<'a, E, S> {
    fn new(run: RunGuard<'a, E>, texts: &'a [S], options: EmbedOptions) -> Self {
        BatchStream {
            owner: run.owner,
            _run: run,
            texts,
            options,
            window_end: 0,
            order: Vec::new(),
            tokens: Vec::new(),
            pos: 0,
            done: 0,
            batches: 0,
            busy: Duration::ZERO,
            failed: false,
        }
    }

    /// Tokenizes the next window of texts and orders it longest first.
    fn next_window(&mut self) -> Result<()> {
        let start = self.window_end;
        let end = (start + WINDOW_TEXTS).min(self.texts.len());
        self.tokens.clear();
        let view = WithOptions {
            embedder: &self.owner.embedder,
            options: &self.options,
        };
        let tokens = tokenize(&view, &self.texts[start..end])?;
        let max_tokens = view.info().max_seq_length;
        self.options
            .check_truncation(&tokens, max_tokens)
            .map_err(|e| match e {
                Error::TextTooLong { index, max_tokens } => Error::TextTooLong {
                    index: start + index,
                    max_tokens,
                },
                other => other,
            })?;
        // Tokenizing's memory is freed: callers waiting for room may fit now.
        self.owner.budget.wake_waiters();
        let lengths: Vec<usize> = tokens.iter().map(Tokens::len).collect();
        let order = longest_first(&lengths);
        let mut tokens: Vec<Option<Tokens>> = tokens.into_iter().map(Some).collect();
        self.tokens = order
            .iter()
            .map(|&i| tokens[i].take().expect("each text once"))
            .collect();
        self.order = order.into_iter().map(|i| start + i).collect();
        self.window_end = end;
        self.pos = 0;
        Ok(())
    }

    /// Adds the time since `started` to this run's and the owner's busy time.
    fn spent(&mut self, started: Instant) {
        let d = started.elapsed();
        self.busy += d;
        self.owner.state.lock().metrics.busy += d;
    }

    /// Texts in this run.
    pub fn total(&self) -> usize {
        self.texts.len()
    }

    /// Texts embedded so far in this run.
    pub fn done(&self) -> usize {
        self.done
    }

    fn next_batch(&mut self) -> Result<EmbeddedBatch> {
        let owner = self.owner;
        if self.pos == self.order.len() {
            self.next_window()?;
        }
        let started = Instant::now();
        let texts: Vec<&Tokens> = self.tokens[self.pos..].iter().collect();
        let ran = owner.embed_next(&texts);
        self.spent(started);
        let Ran {
            texts: n,
            mut embeddings,
            figure_after_bytes,
        } = ran?;
        self.options.shape(&owner.embedder.info(), &mut embeddings);
        let indices = self.order[self.pos..self.pos + n].to_vec();
        self.pos += n;
        self.done += n;
        self.batches += 1;
        if let Some(observer) = &owner.observer {
            observer(&Progress {
                done: self.done,
                total: self.texts.len(),
                batch_size: n,
                memory_bytes: figure_after_bytes,
                texts_per_second: per_second(self.done, self.busy),
            });
        }
        if self.done == self.texts.len() {
            tracing::info!(
                texts = self.done,
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
        if self.failed || self.done >= self.texts.len() {
            return None;
        }
        let result = self.next_batch();
        self.failed = result.is_err();
        Some(result)
    }
}
