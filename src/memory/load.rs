//! Admitting a model load: [`LoadEstimate`] and the one rule every surface
//! loads under ([`MemoryBudget::admit_load`]).

use super::budget::MemoryBudget;
use crate::error::{Error, Result};
use crate::precision::Precision;

/// What loading a model costs in memory, estimated from its configuration
/// before any weight is read (`BertEmbedderBuilder::load_estimate`).
///
/// The three parts the load rule weighs (see
/// [`MemoryBudget::admit_load`] and `docs/memory.md`):
///
/// ```
/// use membatch::memory::LoadEstimate;
///
/// let mib = 1 << 20;
/// let e = LoadEstimate::new(48 * mib, 5 * mib, 4 * mib);
/// assert_eq!(e.peak_bytes(), 53 * mib); // what loading raises memory by
/// assert_eq!(e.needed_bytes(), 53 * mib); // the larger of the transient and one text
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadEstimate {
    /// What the loaded model holds from then on: its weights in their
    /// final form (f32 or int8) and the buffers that come with them.
    pub resident_bytes: u64,
    /// What loading holds besides, and frees when it ends (a layer read in
    /// f32 beside its packed copy; for candle's mapped reader, the word
    /// table's second copy).
    pub transient_bytes: u64,
    /// One text of the model's full sequence length run as a batch of its
    /// own: the least a loaded model must be able to do.
    pub first_batch_bytes: u64,
    /// Weights read later, as batches first use them (the word table's
    /// rows, kept once read): counted in the batches' memory as they are
    /// read, not in the load. At most this much, once every row was used.
    pub on_demand_bytes: u64,
}

impl LoadEstimate {
    /// An estimate from its parts (no weights read on demand).
    pub fn new(resident_bytes: u64, transient_bytes: u64, first_batch_bytes: u64) -> Self {
        LoadEstimate {
            resident_bytes,
            transient_bytes,
            first_batch_bytes,
            on_demand_bytes: 0,
        }
    }

    /// The same estimate with `bytes` of weights read on demand.
    pub fn with_on_demand(mut self, bytes: u64) -> Self {
        self.on_demand_bytes = bytes;
        self
    }

    /// How far loading raises the process's memory at its peak: what stays
    /// plus what loading holds besides.
    pub fn peak_bytes(&self) -> u64 {
        self.resident_bytes.saturating_add(self.transient_bytes)
    }

    /// The room a load needs: what stays, plus the larger of the load's
    /// transient memory and one full-length text (they never coexist: the
    /// first batch runs after the load has freed its copies). A model
    /// admitted so can embed a text once loaded; the word-table rows its
    /// batches read later ([`on_demand_bytes`](Self::on_demand_bytes))
    /// are theirs to fit.
    pub fn needed_bytes(&self) -> u64 {
        self.resident_bytes
            .saturating_add(self.transient_bytes.max(self.first_batch_bytes))
    }
}

impl MemoryBudget {
    /// The rule for loading a model, the same for every surface (library
    /// builders, lazy reloads, the service, the tools): the load is
    /// admitted when [`LoadEstimate::needed_bytes`] fits the budget's
    /// headroom (budget minus the figure now, less what granted work has
    /// reserved), and the memory free under the limit, after a cleanup if
    /// it did not fit at first. The weights
    /// count against the same budget as the batches: once loaded they are
    /// part of the figure, and batches get what is left.
    ///
    /// # Errors
    ///
    /// [`Error::ModelTooLarge`] naming what the load needs and what the
    /// budget has left, when it does not fit.
    pub fn admit_load(&self, estimate: &LoadEstimate, precision: Precision) -> Result<()> {
        let needed = estimate.needed_bytes();
        // Room other work has reserved (a batch granted and not yet at its
        // peak) is not the load's.
        let room = |r: &super::MemoryReading| {
            r.headroom_bytes()
                .saturating_sub(self.metrics().reserved_bytes)
                .min(r.snapshot.free_bytes())
        };
        let mut reading = self.read();
        if needed > room(&reading) {
            // Freed heap (a model just unloaded, a batch's buffers) may
            // still be held by the allocator: give it back and look again.
            reading = self.cleanup();
        }
        let available = room(&reading);
        tracing::debug!(
            needed,
            available,
            resident = estimate.resident_bytes,
            transient = estimate.transient_bytes,
            first_batch = estimate.first_batch_bytes,
            budget = reading.budget_bytes,
            figure = reading.figure_bytes,
            %precision,
            "memory for loading the model"
        );
        if needed > available {
            return Err(Error::ModelTooLarge {
                needed,
                available,
                budget: reading.budget_bytes,
                precision,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{
        CgroupMemory, CgroupVersion, MemoryConfig, MemoryProbe, MemorySnapshot, Reclaim,
    };
    use parking_lot::Mutex;
    use std::sync::Arc;

    const MIB: u64 = 1 << 20;

    /// A cgroup of `limit` whose working set is `used`; a cleanup frees
    /// `freeable` of it.
    #[derive(Debug)]
    struct Cgroup {
        limit: u64,
        used: Mutex<u64>,
        freeable: Mutex<u64>,
    }

    impl MemoryProbe for Cgroup {
        fn snapshot(&self) -> MemorySnapshot {
            let used = *self.used.lock();
            MemorySnapshot::new(24 << 30, 20 << 30).with_cgroup(CgroupMemory::new(
                CgroupVersion::V1,
                Some(self.limit),
                used,
                0,
            ))
        }
    }

    impl Reclaim for Cgroup {
        fn reclaim(&self) {
            let freed = std::mem::take(&mut *self.freeable.lock());
            *self.used.lock() -= freed;
        }
    }

    fn budget(limit: u64, used: u64, freeable: u64) -> MemoryBudget {
        let cgroup = Arc::new(Cgroup {
            limit,
            used: Mutex::new(used),
            freeable: Mutex::new(freeable),
        });
        MemoryBudget::with_parts(MemoryConfig::default(), cgroup.clone(), cgroup)
    }

    #[test]
    fn needed_is_resident_plus_the_larger_of_transient_and_one_text() {
        let e = LoadEstimate::new(50 * MIB, 4 * MIB, 9 * MIB).with_on_demand(45 * MIB);
        assert_eq!(e.peak_bytes(), 54 * MIB);
        assert_eq!(e.needed_bytes(), 59 * MIB);
        assert_eq!(LoadEstimate::new(u64::MAX, 1, 0).needed_bytes(), u64::MAX);
    }

    #[test]
    fn a_load_is_checked_against_the_budget_not_the_limit() {
        // 100 MiB limit: budget 70 MiB; 10 used leaves 60 MiB of headroom
        // (90 MiB free under the limit).
        let b = budget(100 * MIB, 10 * MIB, 0);
        let fits = LoadEstimate::new(50 * MIB, 5 * MIB, 3 * MIB);
        b.admit_load(&fits, Precision::F32).unwrap();
        let too_big = LoadEstimate::new(58 * MIB, 5 * MIB, 3 * MIB);
        match b.admit_load(&too_big, Precision::F32) {
            Err(Error::ModelTooLarge {
                needed,
                available,
                budget,
                ..
            }) => {
                assert_eq!(needed, 63 * MIB);
                assert_eq!(available, 60 * MIB);
                assert_eq!(budget, 70 * MIB);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_load_that_fits_only_after_a_cleanup_is_admitted() {
        // 30 MiB used, 8 of it freeable: 40 MiB of headroom, 48 after.
        let b = budget(100 * MIB, 30 * MIB, 8 * MIB);
        let e = LoadEstimate::new(40 * MIB, 4 * MIB, 2 * MIB);
        b.admit_load(&e, Precision::Int8).unwrap();
        assert_eq!(b.read().figure_bytes, 22 * MIB);
    }
}
