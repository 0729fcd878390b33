pub(crate) mod batching;
pub(crate) mod embedder;
pub(crate) mod gemm;
pub(crate) mod memory;
