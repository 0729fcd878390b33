//! The BERT backend reads memory through its budget's probe: a fake probe
//! reaches the load check and the per-batch room check, on a tiny random
//! model (no real weights needed).
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::{max_abs_diff, tiny_model_dir, token_counts, Tiny};
use membatch::memory::{AllocatorReclaim, MemoryConfig, MemoryProbe, MemorySnapshot};
use membatch::{
    BatchConfig, BatchEmbedder, BertEmbedder, Embedder, Error, MemoryBudget, ModelSource,
};

const MIB: u64 = 1 << 20;

/// A 1000 MiB machine on which the process holds 50 MiB and a neighbour
/// everything but `free`.
#[derive(Debug)]
struct Neighbour {
    free: AtomicU64,
}

impl Neighbour {
    fn leaving(free: u64) -> Arc<Self> {
        Arc::new(Neighbour {
            free: AtomicU64::new(free),
        })
    }

    fn leave(&self, free: u64) {
        self.free.store(free, Ordering::Relaxed);
    }
}

impl MemoryProbe for Neighbour {
    fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot::new(1000 * MIB, self.free.load(Ordering::Relaxed))
            .with_process(Some(50 * MIB), Some(50 * MIB))
    }
}

/// A 500 MiB budget read through `probe`: the process's 50 MiB is far
/// under it, so only what the probe says is free can refuse work.
fn budget(probe: &Arc<Neighbour>) -> MemoryBudget {
    let config = MemoryConfig::builder()
        .max_bytes(500 * MIB)
        .build()
        .unwrap();
    MemoryBudget::with_parts(config, probe.clone(), Arc::new(AllocatorReclaim))
}

#[test]
fn a_load_the_budgets_probe_says_cannot_fit_is_refused_then_admitted_when_memory_frees() {
    let dir = tiny_model_dir(&Tiny::default());
    let probe = Neighbour::leaving(0);
    let builder = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .budget(budget(&probe));
    match builder.clone().build() {
        Err(Error::ModelTooLarge {
            needed, available, ..
        }) => {
            assert_eq!(available, 0);
            assert!(needed > 0);
        }
        other => panic!("expected ModelTooLarge, got {other:?}"),
    }
    probe.leave(900 * MIB);
    let e = builder
        .build()
        .expect("the load fits once the neighbour leaves");
    assert_eq!(e.embed(&["hello"]).unwrap().len(), 1);
}

#[test]
fn a_batch_the_budgets_probe_says_cannot_fit_is_refused_and_the_pipeline_retries_it_smaller() {
    let dir = tiny_model_dir(&Tiny::default());
    let probe = Neighbour::leaving(900 * MIB);
    let budget = budget(&probe);
    let e = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .budget(budget.clone())
        .build()
        .unwrap();
    let texts: Vec<String> = (0..8)
        .map(|i| format!("text {i} is about the quick brown fox"))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let expected = e.embed(&texts).unwrap();

    // Room for a little less than the whole batch, and far more than half.
    let lengths = token_counts(&e, &texts);
    let whole = e.info().cost_prior.unwrap().bytes_for_lengths(lengths);
    probe.leave(whole - 1);
    match e.embed(&texts) {
        Err(Error::MemoryPressure {
            needed, available, ..
        }) => {
            assert_eq!(needed, whole);
            assert_eq!(available, whole - 1);
        }
        other => panic!("expected MemoryPressure, got {other:?}"),
    }

    let batcher = BatchEmbedder::new(&e, budget, BatchConfig::default()).unwrap();
    let got = batcher.embed(&texts).unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, x) in got.iter().zip(&expected) {
        assert!(max_abs_diff(g, x) <= 1e-5);
    }
    let m = batcher.metrics();
    assert!(m.retries >= 1, "the refused batch was planned again: {m:?}");
    assert!(m.batches >= 2, "in smaller batches: {m:?}");
}
