//! MemoryBudget and MemoryGuard against a fake probe whose figures the test
//! controls: refusals, cleanups, peaks, levels and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use membatch::memory::{MemoryBudget, MemoryConfig, MemoryProbe, MemorySnapshot, Reclaim};
use membatch::Error;
use membatch::PressureLevel;
use parking_lot::Mutex;

const MIB: u64 = 1 << 20;

/// A process of `rss` bytes on a machine of 1000 MiB (budget 700 MiB by
/// default). `freeable` bytes go away when the allocator is trimmed.
#[derive(Debug, Default)]
struct Fake {
    state: Mutex<FakeState>,
    reclaims: AtomicU64,
}

#[derive(Debug, Default)]
struct FakeState {
    rss: u64,
    peak: u64,
    freeable: u64,
}

impl Fake {
    fn new(rss_mib: u64) -> Arc<Self> {
        let f = Arc::new(Fake::default());
        f.set(rss_mib);
        f
    }
    fn set(&self, rss_mib: u64) {
        let mut s = self.state.lock();
        s.rss = rss_mib * MIB;
        s.peak = s.peak.max(s.rss);
    }
    /// Work that rises `up_mib` above the current RSS and falls back.
    fn spike(&self, up_mib: u64) {
        let mut s = self.state.lock();
        s.peak = s.peak.max(s.rss + up_mib * MIB);
    }
    fn freeable(&self, mib: u64) {
        self.state.lock().freeable = mib * MIB;
    }
}

impl MemoryProbe for Fake {
    fn snapshot(&self) -> MemorySnapshot {
        let s = self.state.lock();
        MemorySnapshot::new(1000 * MIB, 1000 * MIB - s.rss).with_process(Some(s.rss), Some(s.peak))
    }
    fn reset_peak(&self) -> bool {
        let mut s = self.state.lock();
        s.peak = s.rss;
        true
    }
}

impl Reclaim for Fake {
    fn reclaim(&self) {
        self.reclaims.fetch_add(1, Ordering::SeqCst);
        let mut s = self.state.lock();
        s.rss -= s.freeable;
        s.freeable = 0;
    }
}

fn budget(fake: &Arc<Fake>, config: MemoryConfig) -> MemoryBudget {
    MemoryBudget::with_parts(config, fake.clone(), fake.clone())
}

fn default_budget(fake: &Arc<Fake>) -> MemoryBudget {
    budget(fake, MemoryConfig::default())
}

#[test]
fn work_that_fits_is_granted_and_work_that_does_not_is_refused_after_a_cleanup() {
    let fake = Fake::new(100);
    let b = default_budget(&fake);
    assert_eq!(b.read().budget_bytes, 700 * MIB);

    let g = b.acquire(500 * MIB).unwrap();
    assert_eq!(g.estimated_bytes(), 500 * MIB);
    drop(g);

    match b.acquire(650 * MIB) {
        Err(Error::MemoryPressure {
            needed,
            available,
            level,
        }) => {
            assert_eq!(needed, 650 * MIB);
            assert_eq!(available, 600 * MIB);
            assert_eq!(level, PressureLevel::Normal);
        }
        other => panic!("expected MemoryPressure, got {other:?}"),
    }
    let m = b.metrics();
    assert_eq!((m.guards, m.refusals), (1, 1));
    assert_eq!(
        fake.reclaims.load(Ordering::SeqCst),
        1,
        "cleanup before refusing"
    );
}

#[test]
fn a_cleanup_that_frees_enough_turns_a_refusal_into_a_grant() {
    let fake = Fake::new(600);
    fake.freeable(300);
    let b = default_budget(&fake);
    let g = b.acquire(400 * MIB).expect("fits once 300 MiB are trimmed");
    assert_eq!(b.metrics().refusals, 0);
    assert_eq!(b.metrics().cleanups, 1);
    drop(g);
}

#[test]
fn live_guards_reserve_their_estimates() {
    let fake = Fake::new(100);
    let b = default_budget(&fake);
    let first = b.acquire(300 * MIB).unwrap();
    assert_eq!(b.metrics().reserved_bytes, 300 * MIB);
    assert!(matches!(
        b.acquire(350 * MIB),
        Err(Error::MemoryPressure { .. })
    ));
    drop(first);
    assert_eq!(b.metrics().reserved_bytes, 0);
    let _second = b.acquire(350 * MIB).unwrap();
}

#[test]
fn the_guard_records_the_peak_of_its_work() {
    let fake = Fake::new(100);
    fake.spike(400); // an old peak from before the guard must not count
    let b = default_budget(&fake);
    let g = b.acquire(100 * MIB).unwrap();
    fake.spike(150);
    let report = g.finish();
    assert_eq!(report.rise_bytes, 150 * MIB);
    assert_eq!(report.figure_before_bytes, 100 * MIB);
    assert_eq!(b.metrics().last_work_rise_bytes, Some(150 * MIB));
    assert_eq!(b.metrics().peak_figure_bytes, 250 * MIB);
}

#[test]
fn work_that_pushed_usage_to_cautious_is_cleaned_up_after() {
    let fake = Fake::new(100);
    let b = default_budget(&fake);
    let g = b.acquire(100 * MIB).unwrap();
    fake.spike(100); // peak 200 of 700: normal
    assert!(!g.finish().cleaned_up);
    let g = b.acquire(100 * MIB).unwrap();
    fake.spike(460); // peak 560 of 700 = 0.8: cautious
    let report = g.finish();
    assert!(report.cleaned_up);
    assert_eq!(b.metrics().cleanups, 1);
}

#[test]
fn cleanup_runs_every_n_guards_and_never_when_n_is_zero() {
    let fake = Fake::new(100);
    let b = budget(
        &fake,
        MemoryConfig::builder().cleanup_every(3).build().unwrap(),
    );
    for _ in 0..7 {
        drop(b.acquire(MIB).unwrap());
    }
    assert_eq!(b.metrics().cleanups, 2);
    assert_eq!(fake.reclaims.load(Ordering::SeqCst), 2);

    let fake = Fake::new(100);
    let b = budget(
        &fake,
        MemoryConfig::builder().cleanup_every(0).build().unwrap(),
    );
    for _ in 0..25 {
        drop(b.acquire(MIB).unwrap());
    }
    assert_eq!(b.metrics().cleanups, 0);
}

#[test]
fn readings_move_through_levels_with_hysteresis() {
    let fake = Fake::new(100);
    let b = default_budget(&fake);
    let mut seen = Vec::new();
    for mib in [100, 560, 540, 630, 700, 650, 600, 500] {
        fake.set(mib);
        seen.push(b.read().level);
    }
    use PressureLevel::*;
    assert_eq!(
        seen,
        vec![Normal, Cautious, Cautious, Degraded, Critical, Critical, Degraded, Normal]
    );
}

#[test]
fn an_absolute_budget_applies() {
    let fake = Fake::new(100);
    let b = budget(
        &fake,
        MemoryConfig::builder()
            .max_bytes(300 * MIB)
            .build()
            .unwrap(),
    );
    let r = b.read();
    assert_eq!((r.budget_bytes, r.headroom_bytes()), (300 * MIB, 200 * MIB));
    assert!(b.acquire(250 * MIB).is_err());
}

#[test]
fn concurrent_callers_never_share_the_last_room() {
    // 100 MiB used of a 700 MiB budget: two 250 MiB guards fit, three do not.
    let fake = Fake::new(100);
    let b = budget(
        &fake,
        MemoryConfig::builder().cleanup_every(0).build().unwrap(),
    );
    let alive = AtomicU64::new(0);
    let most = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..200 {
                    if let Ok(g) = b.acquire(250 * MIB) {
                        let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        alive.fetch_sub(1, Ordering::SeqCst);
                        drop(g);
                    }
                }
            });
        }
    });
    assert!(
        most.load(Ordering::SeqCst) <= 2,
        "{} guards of 250 MiB alive at once",
        most.load(Ordering::SeqCst)
    );
    assert_eq!(b.metrics().reserved_bytes, 0);
}

#[test]
fn guards_from_many_threads_balance_their_reservations() {
    let fake = Fake::new(100);
    let b = default_budget(&fake);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let b = b.clone();
            s.spawn(move || {
                for _ in 0..50 {
                    let g = b.acquire(10 * MIB).unwrap();
                    drop(g);
                }
            });
        }
    });
    let m = b.metrics();
    assert_eq!((m.guards, m.reserved_bytes, m.refusals), (200, 0, 0));
}

#[test]
fn reports_say_when_other_guarded_work_overlapped() {
    let fake = Fake::new(100);
    let b = budget(&fake, MemoryConfig::default());
    let alone = b.acquire(MIB).unwrap().finish();
    assert!(!alone.overlapped);
    let first = b.acquire(MIB).unwrap();
    let second = b.acquire(MIB).unwrap();
    assert!(
        second.finish().overlapped,
        "granted while another was alive"
    );
    assert!(
        first.finish().overlapped,
        "another reset the peak meanwhile"
    );
    assert!(!b.acquire(MIB).unwrap().finish().overlapped);
}
