//! membatch's criterion benchmarks. Each file in `benchmarks/` is one group of
//! related benches; all of them draw their inputs from
//! `membatch::bench_support` so figures stay comparable across versions.

use criterion::criterion_main;

mod benchmarks;

criterion_main!(
    benchmarks::memory::benches,
    benchmarks::batching::benches,
    benchmarks::embedder::benches,
    benchmarks::gemm::benches
);
