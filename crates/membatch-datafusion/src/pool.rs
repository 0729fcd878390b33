//! DataFusion's memory pool as the other ledger of membatch's budget.
//!
//! [`PoolShare`] makes a [`MemoryPool`] a [`SharedPool`]: every batch the
//! `embed` function runs holds a reservation in the pool for its predicted
//! peak, next to the reservations of the query's own operators (sorts,
//! joins, aggregates), and gives it back when the batch ends. A refusal
//! makes membatch's batcher shrink the batch and ask again; one text the
//! pool refuses becomes DataFusion's `ResourcesExhausted`.
//!
//! [`RecordingPool`] wraps any pool and remembers the peak of every
//! consumer by name, also after it unregisters, so a run can say what
//! shared its budget (`membatch-sql` prints it; the tests check it).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use membatch::memory::SharedPool;
use parking_lot::Mutex;

/// The name under which `embed`'s batches reserve in the pool.
pub const EMBED_CONSUMER: &str = "membatch::embed";
/// The name under which a model's weights are reserved in the pool.
pub const WEIGHTS_CONSUMER: &str = "membatch::weights";

/// One reservation in a DataFusion [`MemoryPool`], grown and shrunk by
/// membatch's budget as batches start and end.
pub struct PoolShare {
    reservation: MemoryReservation,
}

impl fmt::Debug for PoolShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolShare")
            .field("reserved", &self.reservation.size())
            .finish()
    }
}

impl PoolShare {
    /// A share of `pool` for `embed`'s batches (consumer
    /// [`EMBED_CONSUMER`], not spillable: activations cannot go to disk).
    pub fn new(pool: &Arc<dyn MemoryPool>) -> Self {
        PoolShare {
            reservation: MemoryConsumer::new(EMBED_CONSUMER).register(pool),
        }
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> usize {
        self.reservation.size()
    }
}

impl SharedPool for PoolShare {
    fn try_reserve(&self, bytes: u64) -> Result<(), String> {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        self.reservation
            .try_grow(bytes)
            .map_err(|e| e.strip_backtrace().to_string())
    }

    fn release(&self, bytes: u64) {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        // Every release follows its own grant, so the reservation holds
        // at least `bytes`; should it not, give back what there is rather
        // than fail.
        if self.reservation.try_shrink(bytes).is_err() {
            self.reservation.free();
        }
    }
}

/// Reserves a model's weights in `pool` for as long as the returned
/// reservation lives.
///
/// # Errors
///
/// DataFusion's `ResourcesExhausted` when the pool cannot hold them.
pub fn reserve_weights(
    pool: &Arc<dyn MemoryPool>,
    model: &str,
    bytes: u64,
) -> datafusion::error::Result<MemoryReservation> {
    let reservation = MemoryConsumer::new(format!("{WEIGHTS_CONSUMER}({model})")).register(pool);
    reservation.try_grow(usize::try_from(bytes).unwrap_or(usize::MAX))?;
    Ok(reservation)
}

/// A pool that remembers each consumer's peak reservation by name, also
/// after the consumer is gone, around another pool that decides.
#[derive(Debug)]
pub struct RecordingPool {
    inner: Arc<dyn MemoryPool>,
    peaks: Mutex<Peaks>,
}

#[derive(Debug, Default)]
struct Peaks {
    /// Live reservations by consumer id: (name, bytes).
    live: BTreeMap<usize, (String, usize)>,
    /// Peak bytes by consumer name (summed over live consumers of one
    /// name at the moment of the peak).
    by_name: BTreeMap<String, usize>,
    /// Peak of the whole pool.
    total: usize,
}

impl Peaks {
    fn set(&mut self, r: &MemoryReservation, size: usize, pool_reserved: usize) {
        let id = r.consumer().id();
        let name = r.consumer().name().to_string();
        self.live.insert(id, (name.clone(), size));
        let now: usize = self
            .live
            .values()
            .filter(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .sum();
        let peak = self.by_name.entry(name).or_default();
        *peak = (*peak).max(now);
        self.total = self.total.max(pool_reserved);
    }
}

impl RecordingPool {
    /// Records around `inner`.
    pub fn new(inner: Arc<dyn MemoryPool>) -> Self {
        RecordingPool {
            inner,
            peaks: Mutex::new(Peaks::default()),
        }
    }

    /// The highest reservation each consumer name held at once, largest
    /// first (names are DataFusion's: `ExternalSorter[0]`,
    /// `membatch::embed`, ...).
    pub fn peaks(&self) -> Vec<(String, usize)> {
        let mut peaks: Vec<_> = self
            .peaks
            .lock()
            .by_name
            .iter()
            .map(|(n, b)| (n.clone(), *b))
            .collect();
        peaks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        peaks
    }

    /// The pool's highest total reservation.
    pub fn peak_total(&self) -> usize {
        self.peaks.lock().total
    }
}

impl fmt::Display for RecordingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recording({})", self.inner)
    }
}

impl MemoryPool for RecordingPool {
    /// The wrapped pool's name: recording changes no decision.
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.peaks.lock().live.remove(&consumer.id());
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        let size = reservation.size() + additional;
        self.peaks
            .lock()
            .set(reservation, size, self.inner.reserved());
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        // A reservation updates its size before it tells the pool of a
        // shrink (and after it is granted a grow).
        let size = reservation.size();
        let mut peaks = self.peaks.lock();
        if let Some(live) = peaks.live.get_mut(&reservation.consumer().id()) {
            live.1 = size;
        }
    }

    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::error::Result<()> {
        self.inner.try_grow(reservation, additional)?;
        let size = reservation.size() + additional;
        self.peaks
            .lock()
            .set(reservation, size, self.inner.reserved());
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}
