//! Finding room for the next batch: plan it, ask the budget for it, and
//! when memory refuses, shrink or wait as the
//! [`RetryPolicy`](super::RetryPolicy) says. The one place a batch waits.

use std::time::Instant;

use super::pipeline::BatchEmbedder;
use super::plan::Remaining;
use crate::embedder::Embedder;
use crate::error::{Error, Result};
use crate::memory::MemoryGuard;

/// A batch that fits: its size, its predicted cost, and the room granted.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) texts: usize,
    pub(super) estimate: u64,
    pub(super) guard: MemoryGuard,
}

impl<E: Embedder> BatchEmbedder<E> {
    /// Room for the next batch of the `remaining` texts (at least one),
    /// never empty.
    ///
    /// A refused batch of several texts is halved and planned again. When
    /// not even one text fits, a cleanup runs first; then, if other work
    /// holds reservations, or other callers of this batcher are in a run
    /// (counting tokens, holding vectors: memory that will go), the batch
    /// sleeps until a guard ends or a run moves on (woken by the budget, no
    /// polling) and plans again, until the policy's deadline; with nothing
    /// else holding memory it fails at once with [`Error::BudgetTooSmall`].
    pub(super) fn find_room(&self, remaining: Remaining) -> Result<Room> {
        let padded = remaining.padded;
        let mut deadline = None;
        let mut cleaned = false;
        let mut reading = self.budget.read();
        if reading.budget_bytes == 0 {
            return Err(Error::MemoryUnknown);
        }
        loop {
            // Taken before deciding, so a guard ending in between still
            // wakes the wait below.
            let seen = self.budget.releases();
            let reserved = self.budget.metrics().reserved_bytes;
            let refusal = match self.plan(remaining, &reading, reserved) {
                Some((texts, estimate)) => match self.budget.acquire_after(reading, estimate) {
                    Ok(guard) => {
                        return Ok(Room {
                            texts,
                            estimate,
                            guard,
                        })
                    }
                    Err(e @ (Error::MemoryPressure { .. } | Error::PoolRefused { .. }))
                        if texts > 1 =>
                    {
                        self.on_refused(texts, &e);
                        reading = self.budget.read();
                        continue;
                    }
                    // The shared pool is the engine's to free: one text it
                    // refuses is refused.
                    Err(e @ Error::PoolRefused { .. }) => return Err(e),
                    // One text, refused: the room went to other work
                    // between planning and asking (acquire cleaned up).
                    Err(e @ Error::MemoryPressure { .. }) => e,
                    Err(e) => return Err(e),
                },
                None if !cleaned => {
                    cleaned = true;
                    reading = self.budget.cleanup();
                    continue;
                }
                None => Error::MemoryPressure {
                    needed: self.state.lock().cost.estimate(1, padded),
                    available: reading.headroom_bytes().saturating_sub(reserved),
                    level: reading.level,
                },
            };
            let others_running = self.state.lock().runs > 1;
            if self.budget.metrics().reserved_bytes == 0 && !others_running {
                // Nothing else holds memory: waiting cannot help.
                return Err(self.too_small(&self.budget.read(), padded));
            }
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now() + self.config.retry().max_wait);
            self.state.lock().metrics.waits += 1;
            tracing::debug!(%refusal, "waiting for memory other work holds");
            if !self.budget.wait_for_release(seen, deadline) {
                return Err(refusal);
            }
            cleaned = false;
            reading = self.budget.read();
        }
    }
}
