pub(crate) mod batching;
pub(crate) mod embedder;
#[cfg(feature = "bench-internals")]
pub(crate) mod gemm;
pub(crate) mod memory;
