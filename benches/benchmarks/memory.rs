//! The cost of reading memory: it runs before every batch, so it must be
//! negligible next to a forward pass (aim: well under 50 µs).

use criterion::{criterion_group, Criterion};
use membatch::memory::{MemoryBudget, MemoryConfig, MemoryProbe, SystemProbe};

fn bench_memory(c: &mut Criterion) {
    let probe = SystemProbe::new();
    eprintln!("cgroup: {:?}", probe.cgroup_paths());
    let mut group = c.benchmark_group("memory");
    group.bench_function("snapshot", |b| b.iter(|| probe.snapshot()));
    let budget = MemoryBudget::new(MemoryConfig::builder().cleanup_every(0).build().unwrap());
    group.bench_function("budget_read", |b| b.iter(|| budget.read()));
    group.bench_function("guard_acquire_drop", |b| {
        b.iter(|| drop(budget.acquire(1 << 20).expect("1 MiB fits")))
    });
    group.finish();
}

criterion_group!(benches, bench_memory);
