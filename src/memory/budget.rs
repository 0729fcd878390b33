//! [`MemoryBudget`] and its RAII [`MemoryGuard`].

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::config::MemoryConfig;
use super::probe::{MemoryProbe, MemorySnapshot, SystemProbe};
use super::reclaim::{AllocatorReclaim, Reclaim};
use crate::error::{Error, Result};
use crate::pressure::PressureLevel;

/// One reading of memory against the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct MemoryReading {
    /// The raw figures.
    pub snapshot: MemorySnapshot,
    /// The budget in bytes at this reading (it follows the effective limit).
    pub budget_bytes: u64,
    /// The figure compared with the budget (see [`MemorySnapshot::figure_bytes`]).
    pub figure_bytes: u64,
    /// The pressure level after this reading, hysteresis applied.
    pub level: PressureLevel,
}

impl MemoryReading {
    /// Budget minus figure, zero when over budget.
    pub fn headroom_bytes(&self) -> u64 {
        self.budget_bytes.saturating_sub(self.figure_bytes)
    }

    /// Figure as a fraction of the budget.
    pub fn fraction(&self) -> f64 {
        fraction(self.figure_bytes, self.budget_bytes)
    }
}

/// `figure / budget`, with a zero budget counted as one byte.
fn fraction(figure: u64, budget: u64) -> f64 {
    figure as f64 / budget.max(1) as f64
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryMetrics {
    /// Guards granted.
    pub guards: u64,
    /// Requests refused with [`Error::MemoryPressure`].
    pub refusals: u64,
    /// Cleanups forced (before a refusal, under pressure, or every N guards).
    pub cleanups: u64,
    /// The highest figure seen, in bytes (including the peaks of guarded work).
    pub peak_figure_bytes: u64,
    /// The highest process RSS seen, in bytes: readings and the peaks of
    /// guarded work (the process's own `VmHWM` is reset by every guard, so
    /// this is the figure to report as the run's peak RSS).
    pub peak_rss_bytes: u64,
    /// How far the last guarded work raised the process's memory at its
    /// peak (a rise above where it started, not a peak figure).
    pub last_work_rise_bytes: Option<u64>,
    /// Bytes reserved by guards that are still alive.
    pub reserved_bytes: u64,
}

/// The memory the work may use, read against what the process really uses.
///
/// Cheap to clone (an `Arc` inside); clones share state and counters.
///
/// ```
/// use membatch::memory::{MemoryBudget, MemoryConfig};
///
/// let budget = MemoryBudget::new(MemoryConfig::default());
/// let reading = budget.read();
/// assert!(reading.budget_bytes > 0);
/// {
///     let _guard = budget.acquire(1 << 20)?; // 1 MiB of work
///     // ... run the batch ...
/// } // dropped: the peak is recorded, cleanup runs when due
/// assert_eq!(budget.metrics().guards, 1);
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

/// Another ledger a budget's grants must also fit in: the memory pool of an
/// engine whose other operators reserve from it too (DataFusion's
/// `MemoryPool`, through `membatch-datafusion`). Each guard reserves its
/// estimate here as well as in the budget, and gives it back when it ends;
/// a refusal here refuses the work like a full budget does.
pub trait SharedPool: Send + Sync + std::fmt::Debug {
    /// Reserves `bytes` for one piece of work, or says why there is no room.
    ///
    /// # Errors
    ///
    /// The pool's own reason, in its words.
    fn try_reserve(&self, bytes: u64) -> std::result::Result<(), String>;

    /// Gives back `bytes` reserved earlier.
    fn release(&self, bytes: u64);
}

#[derive(Debug)]
struct Inner {
    config: MemoryConfig,
    probe: Arc<dyn MemoryProbe>,
    reclaim: Arc<dyn Reclaim>,
    pool: Option<Arc<dyn SharedPool>>,
    state: Mutex<State>,
    /// Signalled whenever a guard ends, for work waiting for room.
    released: Condvar,
}

#[derive(Debug, Default)]
struct State {
    level: PressureLevel,
    since_cleanup: u32,
    metrics: MemoryMetrics,
    /// Guards alive now.
    active: u32,
    /// Guards granted so far: each resets the process-wide peak.
    grants: u64,
    /// Guards ended so far.
    releases: u64,
}

impl MemoryBudget {
    /// A budget over the real system ([`SystemProbe`]) that cleans up with
    /// the process allocator ([`AllocatorReclaim`]).
    pub fn new(config: MemoryConfig) -> Self {
        Self::with_parts(
            config,
            Arc::new(SystemProbe::new()),
            Arc::new(AllocatorReclaim),
        )
    }

    /// A budget with an injected probe and reclaimer (tests, other platforms).
    pub fn with_parts(
        config: MemoryConfig,
        probe: Arc<dyn MemoryProbe>,
        reclaim: Arc<dyn Reclaim>,
    ) -> Self {
        MemoryBudget {
            inner: Arc::new(Inner {
                config,
                probe,
                reclaim,
                pool: None,
                state: Mutex::new(State::default()),
                released: Condvar::new(),
            }),
        }
    }

    /// The same budget, its grants also reserved in `pool` (an engine's
    /// memory pool shared with the rest of a query). Counters start afresh.
    #[must_use]
    pub fn sharing(self, pool: Arc<dyn SharedPool>) -> Self {
        MemoryBudget {
            inner: Arc::new(Inner {
                config: self.inner.config.clone(),
                probe: self.inner.probe.clone(),
                reclaim: self.inner.reclaim.clone(),
                pool: Some(pool),
                state: Mutex::new(State::default()),
                released: Condvar::new(),
            }),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.config
    }

    /// The probe this budget reads memory through: what anything that
    /// works under this budget (a backend's load and per-batch checks, a
    /// service measuring an unload) reads too, so a test's fake reaches
    /// every check.
    pub fn probe(&self) -> &Arc<dyn MemoryProbe> {
        &self.inner.probe
    }

    /// Reads memory now and updates the pressure level.
    pub fn read(&self) -> MemoryReading {
        let snapshot = self.inner.probe.snapshot();
        self.judge(snapshot, None, None)
    }

    /// Turns a snapshot into a reading; `peak_figure` is a figure reached
    /// in between readings (by guarded work), if known.
    /// `peak_rss` likewise for the process's RSS.
    fn judge(
        &self,
        snapshot: MemorySnapshot,
        peak_figure: Option<u64>,
        peak_rss: Option<u64>,
    ) -> MemoryReading {
        let budget_bytes = self
            .inner
            .config
            .budget_bytes(snapshot.effective_limit_bytes());
        let figure_bytes = snapshot.figure_bytes();
        let mut state = self.inner.state.lock();
        let highest = figure_bytes.max(peak_figure.unwrap_or(0));
        state.metrics.peak_figure_bytes = state.metrics.peak_figure_bytes.max(highest);
        let rss = snapshot.rss_bytes.unwrap_or(0).max(peak_rss.unwrap_or(0));
        state.metrics.peak_rss_bytes = state.metrics.peak_rss_bytes.max(rss);
        let before = state.level;
        state.level = before.next(
            fraction(figure_bytes, budget_bytes),
            &self.inner.config.thresholds(),
        );
        if state.level != before {
            tracing::info!(
                from = %before,
                to = %state.level,
                figure_bytes,
                budget_bytes,
                "memory pressure level changed"
            );
        }
        MemoryReading {
            snapshot,
            budget_bytes,
            figure_bytes,
            level: state.level,
        }
    }

    /// Forces the allocator to return freed memory to the OS, counts it, and
    /// reads again.
    pub fn cleanup(&self) -> MemoryReading {
        self.inner.reclaim.reclaim();
        {
            let mut state = self.inner.state.lock();
            state.metrics.cleanups += 1;
            state.since_cleanup = 0;
        }
        let reading = self.read();
        tracing::debug!(figure_bytes = reading.figure_bytes, "memory cleanup done");
        reading
    }

    /// Asks for room for work estimated at `estimated_bytes`.
    ///
    /// Succeeds when the figure, plus what live guards have reserved, plus
    /// the estimate fits in the budget. When it does not, forces a cleanup
    /// and reads again before refusing.
    ///
    /// # Errors
    ///
    /// [`Error::MemoryPressure`] when the work does not fit even after
    /// cleanup: the caller should shrink the work and ask again.
    pub fn acquire(&self, estimated_bytes: u64) -> Result<MemoryGuard> {
        self.acquire_after(self.read(), estimated_bytes)
    }

    /// [`acquire`](Self::acquire) from a reading the caller has just taken
    /// (a batcher reads memory to plan the batch it then asks room for), so
    /// the figures are not read twice in a row.
    pub(crate) fn acquire_after(
        &self,
        mut reading: MemoryReading,
        estimated_bytes: u64,
    ) -> Result<MemoryGuard> {
        if let Some(pool) = &self.inner.pool {
            if let Err(reason) = pool.try_reserve(estimated_bytes) {
                self.inner.state.lock().metrics.refusals += 1;
                tracing::warn!(needed = estimated_bytes, %reason, "the shared pool refused the work");
                return Err(Error::PoolRefused {
                    needed: estimated_bytes,
                    reason,
                });
            }
        }
        let release_pool = || {
            if let Some(pool) = &self.inner.pool {
                pool.release(estimated_bytes);
            }
        };
        let grant = match self.try_reserve(&reading, estimated_bytes) {
            Ok(grant) => grant,
            Err(available) => {
                tracing::debug!(
                    needed = estimated_bytes,
                    available,
                    "work does not fit: cleaning up first"
                );
                reading = self.cleanup();
                match self.try_reserve(&reading, estimated_bytes) {
                    Ok(grant) => grant,
                    Err(available) => {
                        release_pool();
                        self.inner.state.lock().metrics.refusals += 1;
                        tracing::warn!(
                            needed = estimated_bytes,
                            available,
                            level = %reading.level,
                            "memory pressure: work refused"
                        );
                        return Err(Error::MemoryPressure {
                            needed: estimated_bytes,
                            available,
                            level: reading.level,
                        });
                    }
                }
            }
        };
        let peak_reset = self.inner.probe.reset_peak();
        Ok(MemoryGuard {
            grant,
            budget: self.clone(),
            estimated_bytes,
            start_figure: reading.figure_bytes,
            // The reset sets VmHWM to the RSS of this moment, which the
            // reading just taken already holds: no second snapshot needed.
            start_rss: reading.snapshot.rss_bytes,
            peak_reset,
            done: false,
        })
    }

    /// Reserves `estimated_bytes` when the figure, what live guards hold and
    /// the estimate fit in the budget, checking and reserving under one lock
    /// so that concurrent callers cannot both take the last room. On refusal
    /// returns the bytes that were available.
    fn try_reserve(&self, reading: &MemoryReading, estimated_bytes: u64) -> Result<Grant, u64> {
        let mut state = self.inner.state.lock();
        let reserved = state.metrics.reserved_bytes;
        let needed = reading
            .figure_bytes
            .saturating_add(reserved)
            .saturating_add(estimated_bytes);
        if needed > reading.budget_bytes {
            return Err(reading.headroom_bytes().saturating_sub(reserved));
        }
        state.metrics.reserved_bytes += estimated_bytes;
        state.metrics.guards += 1;
        state.active += 1;
        state.grants += 1;
        Ok(Grant {
            number: state.grants,
            shared: state.active > 1,
        })
    }

    /// Counters so far.
    pub fn metrics(&self) -> MemoryMetrics {
        self.inner.state.lock().metrics
    }

    /// The current pressure level (as of the last reading).
    pub fn level(&self) -> PressureLevel {
        self.inner.state.lock().level
    }

    /// How many guards have ended so far: take it before deciding to wait,
    /// and hand it to [`wait_for_release`](Self::wait_for_release), so a
    /// guard that ends in between is not missed.
    pub(crate) fn releases(&self) -> u64 {
        self.inner.state.lock().releases
    }

    /// Wakes work waiting for room, as a guard's end does: memory held
    /// outside guards (a caller's token counting) has been freed.
    pub(crate) fn wake_waiters(&self) {
        self.inner.state.lock().releases += 1;
        self.inner.released.notify_all();
    }

    /// Blocks until a guard ends after `seen` releases (returns `true` at
    /// once if one already has) or `deadline` passes (`false`). Nothing
    /// polls: ending guards wake the waiters.
    pub(crate) fn wait_for_release(&self, seen: u64, deadline: Instant) -> bool {
        let mut state = self.inner.state.lock();
        while state.releases == seen {
            if self
                .inner
                .released
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return state.releases != seen;
            }
        }
        true
    }
}

/// Which grant a guard is, and whether others were alive when it was made.
#[derive(Debug, Clone, Copy)]
struct Grant {
    number: u64,
    shared: bool,
}

/// What one piece of guarded work cost; returned by [`MemoryGuard::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkReport {
    /// The estimate the guard was granted for.
    pub estimated_bytes: u64,
    /// The figure when the guard was granted.
    pub figure_before_bytes: u64,
    /// How far the work raised the process's memory at its peak: peak RSS
    /// minus RSS at the start (the end RSS where peaks cannot be reset). A
    /// rise, not a peak: the peak figure is `figure_before_bytes` plus this.
    pub rise_bytes: u64,
    /// The figure after the work.
    pub figure_after_bytes: u64,
    /// Whether a cleanup ran after the work.
    pub cleaned_up: bool,
    /// The budget in bytes at the end of the work.
    pub budget_bytes: u64,
    /// Other guarded work ran at some point during this work: the peak is
    /// process-wide, so `rise_bytes` may include that work's memory, or
    /// miss part of this work's peak (another guard reset it).
    pub overlapped: bool,
}

/// Room granted by [`MemoryBudget::acquire`] for one piece of work.
///
/// Keep it alive exactly as long as the work; on drop it records the peak
/// the work reached and forces a cleanup when the work pushed usage to
/// [`PressureLevel::Cautious`] or beyond, and every `cleanup_every` guards.
///
/// The peak comes from the process's `VmHWM`, reset when the guard is
/// granted; with several guards alive at once their peaks overlap.
#[must_use = "the guard must live as long as the work it covers"]
#[derive(Debug)]
pub struct MemoryGuard {
    budget: MemoryBudget,
    grant: Grant,
    estimated_bytes: u64,
    start_figure: u64,
    start_rss: Option<u64>,
    peak_reset: bool,
    done: bool,
}

impl MemoryGuard {
    /// The estimate this guard was granted for.
    pub fn estimated_bytes(&self) -> u64 {
        self.estimated_bytes
    }

    /// Ends the work now and says what it cost.
    pub fn finish(mut self) -> WorkReport {
        self.complete()
    }

    fn complete(&mut self) -> WorkReport {
        self.done = true;
        let inner = &self.budget.inner;
        let snapshot = inner.probe.snapshot();
        let end_rss = snapshot.rss_bytes.unwrap_or(0);
        let top = if self.peak_reset {
            snapshot.peak_rss_bytes.unwrap_or(end_rss).max(end_rss)
        } else {
            end_rss
        };
        let rise_bytes = top.saturating_sub(self.start_rss.unwrap_or(top));
        let peak_figure = self.start_figure.saturating_add(rise_bytes);
        let reading = self.budget.judge(snapshot, Some(peak_figure), Some(top));

        let config = &inner.config;
        let peak_level = PressureLevel::for_fraction(
            fraction(peak_figure, reading.budget_bytes),
            &config.thresholds(),
        );
        let (due, overlapped) = {
            let mut state = inner.state.lock();
            let overlapped = self.grant.shared || state.grants != self.grant.number;
            state.active = state.active.saturating_sub(1);
            state.metrics.reserved_bytes = state
                .metrics
                .reserved_bytes
                .saturating_sub(self.estimated_bytes);
            if let Some(pool) = &inner.pool {
                pool.release(self.estimated_bytes);
            }
            state.metrics.last_work_rise_bytes = Some(rise_bytes);
            state.since_cleanup += 1;
            state.releases += 1;
            let every = config.cleanup_every();
            (every > 0 && state.since_cleanup >= every, overlapped)
        };
        // The room this guard held is free: wake whoever waits for it.
        inner.released.notify_all();
        let pressed =
            peak_level >= PressureLevel::Cautious || reading.level >= PressureLevel::Cautious;
        let mut figure_after_bytes = reading.figure_bytes;
        if pressed || due {
            figure_after_bytes = self.budget.cleanup().figure_bytes;
        }
        WorkReport {
            estimated_bytes: self.estimated_bytes,
            figure_before_bytes: self.start_figure,
            rise_bytes,
            figure_after_bytes,
            cleaned_up: pressed || due,
            budget_bytes: reading.budget_bytes,
            overlapped,
        }
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        if !self.done {
            self.complete();
        }
    }
}
