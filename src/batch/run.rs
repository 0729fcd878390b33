//! Running one batch: room from the budget, the forward pass under its
//! guard (a panic contained), and what the batcher learns from it. Used by
//! [`BatchStream`](super::BatchStream) and by the service's worker.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::pipeline::BatchEmbedder;
use super::plan::Remaining;
use super::retry::Room;
use crate::embedder::{Embedder, Tokens};
use crate::error::{Error, Result};
use crate::pressure::PressureLevel;

/// A batch that failed: how many leading texts it held (one when no batch
/// could be planned), and why.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) texts: usize,
    pub(crate) error: Error,
}

/// One batch that ran: how many of the texts it took, and their vectors.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The number of leading texts embedded.
    pub(crate) texts: usize,
    /// Their vectors, in order.
    pub(crate) embeddings: Vec<Vec<f32>>,
    /// The memory figure after the batch.
    pub(crate) figure_after_bytes: u64,
}

impl<E: Embedder> BatchEmbedder<E> {
    /// Embeds the leading texts of `texts` (tokenized, longest first, not
    /// empty) as one batch: as many as the rule, the token limit and the
    /// memory room allow (at least one).
    ///
    /// A refused batch is retried smaller; a panic in the embedder becomes
    /// [`Error::EmbedderPanicked`], the guard still ends and nothing else
    /// is disturbed.
    pub(crate) fn embed_next(&self, texts: &[&Tokens]) -> Result<Ran> {
        self.embed_next_or_fail(texts).map_err(|f| f.error)
    }

    /// As [`embed_next`](Self::embed_next), saying on failure how many
    /// leading texts the failed batch held, so that a caller serving many
    /// requests fails only theirs.
    pub(crate) fn embed_next_or_fail(&self, texts: &[&Tokens]) -> Result<Ran, Failed> {
        let remaining = Remaining::of(texts);
        let fail = |texts, error| Failed { texts, error };
        loop {
            // A lazy model loads before the batch is planned: the plan
            // then sees its weights, and the load is admitted alone.
            self.embedder.ensure_loaded().map_err(|e| fail(1, e))?;
            let padded = remaining.padded;
            let Room {
                texts: n,
                estimate,
                guard,
            } = self.find_room(remaining).map_err(|e| fail(1, e))?;
            tracing::debug!(
                texts = n,
                padded_tokens = padded,
                estimate,
                remaining = remaining.texts,
                "processing batch"
            );
            let loaded_before = self.embedder.state().is_loaded();
            let result = catch_unwind(AssertUnwindSafe(|| self.embedder.embed_tokens(&texts[..n])));
            let report = guard.finish();
            // A model that loaded inside this batch after all (an unload
            // slipped in after the load above): the peak is mostly the
            // load's, which the batches after it do not pay. Learn nothing
            // from it, and judge the pressure by where memory settled.
            let loaded_here = !loaded_before && self.embedder.state().is_loaded();
            let embeddings = match result {
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    tracing::error!(%message, texts = n, "the embedder panicked");
                    return Err(fail(n, Error::EmbedderPanicked { message }));
                }
                Ok(Ok(v)) if v.len() == n => v,
                Ok(Ok(v)) => {
                    return Err(fail(
                        n,
                        Error::EmbedderContract {
                            method: "embed_tokens",
                            expected: n,
                            got: v.len(),
                        },
                    ))
                }
                Ok(Err(e @ Error::MemoryPressure { .. })) if n > 1 => {
                    self.on_refused(n, &e);
                    continue;
                }
                Ok(Err(e)) => return Err(fail(n, e)),
            };
            let peak_figure = if loaded_here {
                report.figure_after_bytes
            } else {
                report.figure_before_bytes.saturating_add(report.rise_bytes)
            };
            let peak_level = PressureLevel::for_fraction(
                peak_figure as f64 / report.budget_bytes.max(1) as f64,
                &self.budget.config().thresholds(),
            );
            let tokens = texts[..n].iter().map(|t| t.len()).sum();
            self.on_done(n, padded, tokens, peak_level, &report, !loaded_here);
            return Ok(Ran {
                texts: n,
                embeddings,
                figure_after_bytes: report.figure_after_bytes,
            });
        }
    }
}

/// The message a panic carried, when it is text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
