//! membatch's criterion benchmarks. Each file in `benchmarks/` is one group of
//! related benches; all of them draw their inputs from
//! `membatch::bench_support` so figures stay comparable across versions.

use criterion::criterion_main;

mod benchmarks;

// The kernels' group reads the forward pass's internals, compiled with
// the `bench-internals` feature only:
// `cargo bench --features bench-internals -- dense_product`.
#[cfg(feature = "bench-internals")]
criterion_main!(
    benchmarks::memory::benches,
    benchmarks::batching::benches,
    benchmarks::embedder::benches,
    benchmarks::gemm::benches
);
#[cfg(not(feature = "bench-internals"))]
criterion_main!(
    benchmarks::memory::benches,
    benchmarks::batching::benches,
    benchmarks::embedder::benches
);
