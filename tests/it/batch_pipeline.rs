//! BatchEmbedder over a fake embedder on a simulated machine: the size
//! trace, retries, planning under a budget, order, streaming, progress,
//! metrics and typed errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fakes::{text, Fake, Machine, Scripted, MIB};
use membatch::batch::{BatchConfig, BatchEmbedder, Progress, RetryPolicy};
use membatch::Error;
use parking_lot::Mutex;

/// A pipeline over `fake` with room to spare (900 MiB budget, 50 MiB used).
fn roomy(fake: Fake) -> BatchEmbedder<Fake> {
    let machine = fake.machine.clone();
    BatchEmbedder::new(fake, machine.budget(900 * MIB), BatchConfig::default()).unwrap()
}

fn texts(n: usize, words: impl Fn(usize) -> usize) -> Vec<String> {
    (0..n).map(|i| text(i, words(i))).collect()
}

fn expected(texts: &[String]) -> Vec<Vec<f32>> {
    texts.iter().map(|t| Fake::vector(t)).collect()
}

/// Every text embedded exactly once by a successful call.
fn assert_each_once(fake: &Fake, texts: &[String]) {
    let mut seen: Vec<String> = fake
        .calls
        .lock()
        .iter()
        .filter(|c| c.ok)
        .flat_map(|c| c.texts.clone())
        .collect();
    seen.sort();
    let mut want = texts.to_vec();
    want.sort();
    assert_eq!(seen, want, "a text was lost or embedded twice");
}

#[test]
fn sizes_grow_by_four_to_sixty_four_then_stay() {
    let machine = Machine::new(50 * MIB);
    let fake = Fake::new(&machine);
    let input = texts(1200, |_| 6);
    let b = roomy(fake);
    assert_eq!(b.embed(&input).unwrap(), expected(&input));
    let sizes = b.embedder().sizes();
    let growth: Vec<usize> = (0..15).map(|i| 8 + 4 * i).collect();
    assert_eq!(sizes[..15], growth[..]);
    assert!(
        sizes[15..sizes.len() - 1].iter().all(|&s| s == 64),
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 1200);
    let m = b.metrics();
    assert_eq!(
        (m.batches, m.texts, m.retries, m.shrinks),
        (sizes.len() as u64, 1200, 0, 0)
    );
    assert_eq!(m.batch_size, 64);
    assert_eq!(m.padding_ratio(), 1.0, "equal lengths pad nothing");
}

#[test]
fn a_refused_batch_is_halved_and_retried_with_the_same_texts() {
    let machine = Machine::new(50 * MIB);
    let mut fake = Fake::new(&machine);
    // Calls 0..=3 succeed (8, 12, 16, 20); call 4 (24) and 5 (12) fail.
    fake.refuse = [4, 5].into();
    let input = texts(300, |_| 6);
    let b = roomy(fake);
    assert_eq!(b.embed(&input).unwrap(), expected(&input));
    let calls = b.embedder().calls.lock().clone();
    let sizes: Vec<usize> = calls.iter().map(|c| c.texts.len()).collect();
    assert_eq!(sizes[..8], [8, 12, 16, 20, 24, 12, 6, 10]);
    assert_eq!(
        calls[5].texts[..],
        calls[4].texts[..12],
        "retried from the same text"
    );
    assert_eq!(calls[6].texts[..], calls[4].texts[..6]);
    assert_each_once(b.embedder(), &input);
    let m = b.metrics();
    assert_eq!((m.retries, m.shrinks), (2, 2));
}

#[test]
fn planning_keeps_the_peak_under_the_budget() {
    let machine = Machine::new(50 * MIB);
    let fake = Fake::new(&machine);
    // Lengths 3..=300 words: many texts truncate at 256 tokens.
    let input = texts(600, |i| 3 + (i * 37) % 298);
    let budget = 120 * MIB;
    let b = BatchEmbedder::new(fake, machine.budget(budget), BatchConfig::default()).unwrap();
    assert_eq!(b.embed(&input).unwrap(), expected(&input));
    assert!(
        machine.highest() <= budget,
        "simulated peak {} MiB over the {} MiB budget",
        machine.highest() / MIB,
        budget / MIB
    );
    let sizes = b.embedder().sizes();
    let fake = b.embedder();
    let costliest = fake.cost(64, 256);
    assert!(
        50 * MIB + costliest > budget,
        "a full batch of long texts would not fit"
    );
    assert!(sizes.iter().any(|&s| s < 64), "{sizes:?}");
    assert_each_once(fake, &input);
    // Longest first: neighbours pad little.
    let ratio = b.metrics().padding_ratio();
    assert!(ratio < 1.1, "padding ratio {ratio}");
}

#[test]
fn a_peak_in_the_degraded_band_halves_the_size() {
    let machine = Machine::new(50 * MIB);
    let mut fake = Fake::new(&machine);
    // Far costlier than the shape suggests: the first batch lands high.
    fake.per_unit = 25_000;
    let input = texts(40, |_| 40);
    let b = BatchEmbedder::new(fake, machine.budget(400 * MIB), BatchConfig::default()).unwrap();
    assert_eq!(b.embed(&input).unwrap(), expected(&input));
    let sizes = b.embedder().sizes();
    assert_eq!(sizes[0], 8);
    assert!(sizes[1] < 8, "{sizes:?}");
    assert!(b.metrics().shrinks >= 1);
}

#[test]
fn one_text_that_cannot_fit_is_a_typed_error() {
    let machine = Machine::new(50 * MIB);
    let fake = Fake::new(&machine);
    let input = texts(3, |_| 300);
    let b = BatchEmbedder::new(fake, machine.budget(51 * MIB), BatchConfig::default()).unwrap();
    match b.embed(&input) {
        Err(Error::BudgetTooSmall {
            needed,
            budget,
            in_use,
            tokens,
        }) => {
            assert_eq!(budget, 51 * MIB);
            assert_eq!(in_use, 50 * MIB);
            assert_eq!(tokens, 256);
            assert!(needed > budget);
        }
        other => panic!("expected BudgetTooSmall, got {other:?}"),
    }
    assert!(b.embedder().calls.lock().is_empty(), "nothing ran");
    let msg = b.embed(&input).unwrap_err().to_string();
    assert!(msg.contains("raise the budget"), "{msg}");
}

#[test]
fn the_embedder_refusing_a_single_text_is_returned() {
    let machine = Machine::new(50 * MIB);
    let mut fake = Fake::new(&machine);
    fake.refuse = (0..10).collect();
    let b = roomy(fake);
    let err = b.embed(&texts(20, |_| 5)).unwrap_err();
    assert!(matches!(err, Error::MemoryPressure { .. }), "{err}");
    let sizes: Vec<usize> = b
        .embedder()
        .calls
        .lock()
        .iter()
        .map(|c| c.texts.len())
        .collect();
    assert_eq!(sizes, [8, 4, 2, 1]);
}

#[test]
fn streaming_yields_every_index_once_with_its_vector() {
    let machine = Machine::new(50 * MIB);
    let fake = Fake::new(&machine);
    let input = texts(333, |i| 1 + i % 50);
    let b = roomy(fake);
    let stream = b.stream(&input).unwrap();
    assert_eq!(stream.total(), 333);
    let mut seen = vec![false; input.len()];
    let mut last_len = usize::MAX;
    for batch in stream {
        let batch = batch.unwrap();
        assert_eq!(batch.indices.len(), batch.embeddings.len());
        for (i, v) in batch.indices.iter().zip(&batch.embeddings) {
            assert!(!seen[*i], "index {i} twice");
            seen[*i] = true;
            assert_eq!(*v, Fake::vector(&input[*i]));
            let len = b.embedder().tokens(&input[*i]);
            assert!(len <= last_len, "longest first");
            last_len = len;
        }
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn progress_reports_every_batch() {
    let machine = Machine::new(50 * MIB);
    let fake = Fake::new(&machine);
    let events: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = events.clone();
    let b = roomy(fake).with_progress(move |p| sink.lock().push(*p));
    b.embed(&texts(100, |_| 4)).unwrap();
    let events = events.lock();
    let done: Vec<usize> = events.iter().map(|p| p.done).collect();
    assert_eq!(done, [8, 20, 36, 56, 80, 100]);
    assert!(events
        .iter()
        .all(|p| p.total == 100 && p.memory_bytes == 50 * MIB));
    assert_eq!(events.last().unwrap().batch_size, 20);
}

#[test]
fn empty_inputs_and_empty_strings() {
    let machine = Machine::new(50 * MIB);
    let b = roomy(Fake::new(&machine));
    let none: [&str; 0] = [];
    assert!(b.embed(&none).unwrap().is_empty());
    assert_eq!(b.metrics().batches, 0);
    assert_eq!(
        b.embed(&["", "a", ""]).unwrap(),
        [Fake::vector(""), Fake::vector("a"), Fake::vector("")]
    );
}

#[test]
fn a_huge_text_is_never_handed_over_whole() {
    let machine = Machine::new(50 * MIB);
    let b = roomy(Fake::new(&machine));
    let huge = "word ".repeat(10 << 20); // 50 MiB
    let out = b.embed(&[huge.as_str(), "short"]).unwrap();
    assert_eq!(out.len(), 2);
    let calls = b.embedder().calls.lock();
    let longest = calls
        .iter()
        .flat_map(|c| &c.texts)
        .map(|t| t.len())
        .max()
        .unwrap();
    assert!(longest < 64 << 10, "{longest} bytes handed to the embedder");
    assert_eq!(calls[0].padded, 256, "still truncated at max_seq_length");
}

#[test]
fn the_token_budget_bounds_padded_tokens() {
    let machine = Machine::new(50 * MIB);
    let config = BatchConfig::builder()
        .max_batch_tokens(1000)
        .build()
        .unwrap();
    let b = BatchEmbedder::new(Fake::new(&machine), machine.budget(900 * MIB), config).unwrap();
    b.embed(&texts(200, |i| 10 + i % 200)).unwrap();
    for c in b.embedder().calls.lock().iter() {
        assert!(
            c.texts.len() * c.padded <= 1000,
            "{} × {}",
            c.texts.len(),
            c.padded
        );
    }
    let small = BatchConfig::builder()
        .max_batch_tokens(100)
        .build()
        .unwrap();
    let err =
        BatchEmbedder::new(Fake::new(&machine), machine.budget(900 * MIB), small).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig { name, .. } if name == "max_batch_tokens"),
        "{err}"
    );
}

#[test]
fn concurrent_callers_share_one_pipeline() {
    let machine = Machine::new(50 * MIB);
    let b = Arc::new(roomy(Fake::new(&machine)));
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let b = b.clone();
            std::thread::spawn(move || {
                let input: Vec<String> = (0..150).map(|i| text(k * 1000 + i, 5 + i % 9)).collect();
                assert_eq!(b.embed(&input).unwrap(), expected(&input));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(b.metrics().texts, 600);
}

#[test]
fn an_embedder_that_miscounts_is_an_error_not_a_lost_text() {
    struct Miscount;
    impl membatch::Embedder for Miscount {
        fn info(&self) -> membatch::ModelInfo {
            membatch::ModelInfo::new(1, 16)
        }
        fn tokenize(&self, texts: &[&str]) -> membatch::Result<Vec<membatch::Tokens>> {
            Ok(vec![
                membatch::Tokens::new(vec![0; 3]);
                texts.len().saturating_sub(1)
            ])
        }
        fn embed_tokens(&self, batch: &[&membatch::Tokens]) -> membatch::Result<Vec<Vec<f32>>> {
            Ok(vec![vec![0.0]; batch.len()])
        }
    }
    let machine = Machine::new(50 * MIB);
    let b =
        BatchEmbedder::new(Miscount, machine.budget(900 * MIB), BatchConfig::default()).unwrap();
    let err = b.embed(&["a", "b", "c"]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::EmbedderContract {
                method: "tokenize",
                expected: 3,
                got: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("2 results for 3 texts"), "{err}");
}

/// A 100 MiB budget over 50 MiB in use, 48 MiB of it reserved by another
/// caller's guard: one long text (predicted near 4 MB) does not fit until
/// that guard ends.
fn held_budget(policy: RetryPolicy) -> (BatchEmbedder<Fake>, membatch::MemoryGuard, String) {
    let machine = Machine::new(50 * MIB);
    let budget = machine.budget(100 * MIB);
    let held = budget.acquire(48 * MIB).unwrap();
    let config = BatchConfig::builder().retry(policy).build().unwrap();
    let b = BatchEmbedder::new(Fake::new(&machine), budget, config).unwrap();
    (b, held, text(0, 300))
}

#[test]
fn a_batch_waits_for_memory_another_caller_holds_and_runs_when_it_is_released() {
    let (b, held, long) = held_budget(RetryPolicy::waiting(Duration::from_secs(30)));
    let started = Instant::now();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let out = b.embed(&[long.as_str()]).unwrap();
    let waited = started.elapsed();
    release.join().unwrap();
    assert_eq!(out, vec![Fake::vector(&long)]);
    assert!(b.metrics().waits >= 1, "{:?}", b.metrics());
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "ran {waited:?} after the release was due, not when woken"
    );
}

#[test]
fn the_retry_policy_bounds_the_wait() {
    let (b, _held, long) = held_budget(RetryPolicy::waiting(Duration::from_millis(100)));
    let started = Instant::now();
    let err = b.embed(&[long.as_str()]).unwrap_err();
    assert!(matches!(err, Error::MemoryPressure { .. }), "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let (b, _held, long) = held_budget(RetryPolicy::no_wait());
    let started = Instant::now();
    let err = b.embed(&[long.as_str()]).unwrap_err();
    assert!(matches!(err, Error::MemoryPressure { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(b.metrics().texts, 0, "nothing ran");
}

#[test]
fn unreadable_memory_figures_need_an_absolute_budget() {
    use membatch::memory::{AllocatorReclaim, MemoryBudget, MemoryConfig, SystemProbe};
    let probe = Arc::new(SystemProbe::with_files(
        "/nonexistent/status",
        "/nonexistent/meminfo",
        None,
    ));
    let machine = Machine::new(50 * MIB);
    let budget = |config: MemoryConfig| {
        MemoryBudget::with_parts(config, probe.clone(), Arc::new(AllocatorReclaim))
    };
    let b = BatchEmbedder::new(
        Fake::new(&machine),
        budget(MemoryConfig::default()),
        BatchConfig::default(),
    )
    .unwrap();
    let err = b.embed(&["a b c"]).unwrap_err();
    assert!(matches!(err, Error::MemoryUnknown), "{err}");
    assert!(err.to_string().contains("MEMBATCH_MAX_MEMORY"), "{err}");
    // The documented fallback: an absolute budget, within which batches are
    // planned by their estimates alone.
    let b = BatchEmbedder::new(
        Fake::new(&machine),
        budget(
            MemoryConfig::builder()
                .max_bytes(100 * MIB)
                .build()
                .unwrap(),
        ),
        BatchConfig::default(),
    )
    .unwrap();
    let input = texts(40, |i| 10 + i);
    assert_eq!(b.embed(&input).unwrap(), expected(&input));
}

#[test]
fn an_embedder_that_fails_or_panics_mid_stream_ends_the_stream_with_a_typed_error() {
    for (marker, is_expected) in [
        (
            "ERROR",
            (|e: &Error| matches!(e, Error::Inference(_))) as fn(&Error) -> bool,
        ),
        ("PANIC", |e: &Error| {
            matches!(e, Error::EmbedderPanicked { .. })
        }),
    ] {
        let machine = Machine::new(50 * MIB);
        let b = BatchEmbedder::new(
            Scripted::default(),
            machine.budget(900 * MIB),
            BatchConfig::builder().fixed(4).build().unwrap(),
        )
        .unwrap();
        // Longest first: the short marked text is in the last batch.
        let mut input = texts(12, |i| 30 - i);
        input.push(marker.to_string());
        let results: Vec<_> = b.stream(&input).unwrap().collect();
        assert_eq!(results.len(), 4, "{marker}: three batches, then the error");
        assert!(results[..3].iter().all(|r| r.is_ok()), "{marker}");
        let err = results[3].as_ref().unwrap_err();
        assert!(is_expected(err), "{marker}: {err}");
        // The batcher is still usable afterwards.
        assert_eq!(b.embed(&["fine"]).unwrap(), expected(&["fine".into()]));
    }
}

/// A pool of `capacity` bytes that records what it lends.
#[derive(Debug)]
struct CountingPool {
    capacity: u64,
    reserved: Mutex<u64>,
    peak: Mutex<u64>,
}

impl membatch::memory::SharedPool for CountingPool {
    fn try_reserve(&self, bytes: u64) -> std::result::Result<(), String> {
        let mut r = self.reserved.lock();
        if *r + bytes > self.capacity {
            return Err(format!("{} of {} reserved", *r, self.capacity));
        }
        *r += bytes;
        let mut p = self.peak.lock();
        *p = (*p).max(*r);
        Ok(())
    }
    fn release(&self, bytes: u64) {
        *self.reserved.lock() -= bytes;
    }
}

#[test]
fn a_shared_pool_shrinks_batches_and_refuses_what_cannot_fit_even_alone() {
    let machine = Machine::new(50 * MIB);
    let fake = Fake::new(&machine);
    // One text of 256 tokens is predicted near 3.9 MB: a 10 MB pool takes
    // two at a time, where the roomy budget alone would take eight.
    let one = 4 * (256 * (5 * 256 + 1024) + 256 * 256) * 3 / 2;
    let pool = Arc::new(CountingPool {
        capacity: 10 * MIB,
        reserved: Mutex::new(0),
        peak: Mutex::new(0),
    });
    let budget = machine.budget(900 * MIB).sharing(pool.clone());
    let b = BatchEmbedder::new(fake, budget, BatchConfig::default()).unwrap();
    let input = texts(20, |_| 300);
    assert_eq!(b.embed(&input).unwrap(), expected(&input));
    assert!(*pool.peak.lock() <= 10 * MIB);
    assert!(
        *pool.peak.lock() >= one as u64,
        "the pool lent to the batches"
    );
    assert_eq!(*pool.reserved.lock(), 0, "every guard gave its share back");
    assert!(
        b.embedder().sizes().iter().all(|&n| n <= 2),
        "{:?}",
        b.embedder().sizes()
    );
    assert!(b.metrics().retries > 0);

    let tiny = Arc::new(CountingPool {
        capacity: MIB,
        reserved: Mutex::new(0),
        peak: Mutex::new(0),
    });
    let budget = machine.budget(900 * MIB).sharing(tiny);
    let b = BatchEmbedder::new(Fake::new(&machine), budget, BatchConfig::default()).unwrap();
    let err = b.embed(&input).unwrap_err();
    assert!(
        matches!(&err, Error::PoolRefused { reason, .. } if reason.contains("of 1048576 reserved")),
        "{err}"
    );
}

/// A model its first batch loads inside `embed_tokens` (no
/// `ensure_loaded`: as a lazy model does when an unload slips in between):
/// the load raises the machine's steady memory by `load` bytes for good.
#[derive(Debug)]
struct LoadsOnFirstBatch {
    fake: Fake,
    base: u64,
    load: u64,
    loaded: std::sync::atomic::AtomicBool,
}

impl membatch::Embedder for LoadsOnFirstBatch {
    fn info(&self) -> membatch::ModelInfo {
        self.fake.info()
    }

    fn tokenize(&self, texts: &[&str]) -> membatch::Result<Vec<membatch::Tokens>> {
        self.fake.tokenize(texts)
    }

    fn embed_tokens(&self, batch: &[&membatch::Tokens]) -> membatch::Result<Vec<Vec<f32>>> {
        if !self.loaded.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.fake.machine.set_base(self.base + self.load);
        }
        self.fake.embed_tokens(batch)
    }

    fn state(&self) -> membatch::ModelState {
        if self.loaded.load(std::sync::atomic::Ordering::SeqCst) {
            membatch::ModelState::Loaded
        } else {
            membatch::ModelState::Unloaded
        }
    }
}

#[test]
fn a_batch_that_loads_the_model_teaches_nothing_about_batches() {
    // A 200 MiB load inside the first batch of eight long texts (about
    // 19 MiB of work): taken for the batch's own cost it would make one
    // text cost ~30 MiB, and leave room for four or five in the 150 MiB the
    // budget has left. The batches grow as the room allows instead.
    let machine = Machine::new(50 * MIB);
    let b = BatchEmbedder::new(
        LoadsOnFirstBatch {
            fake: Fake::new(&machine),
            base: 50 * MIB,
            load: 200 * MIB,
            loaded: Default::default(),
        },
        machine.budget(400 * MIB),
        BatchConfig::default(),
    )
    .unwrap();
    let input = texts(200, |_| 250);
    assert_eq!(b.embed(&input).unwrap(), expected(&input));
    let sizes = b.embedder().fake.sizes();
    // (Without the rule: [8, 1, 1, 1, …], one text at a time for good.)
    assert_eq!(sizes[..3], [8, 12, 16], "{sizes:?}");
    assert!(
        sizes[2..sizes.len() - 1].iter().all(|&n| n >= 16),
        "{sizes:?}"
    );
    assert_eq!(b.metrics().shrinks, 0);
}
