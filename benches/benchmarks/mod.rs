pub(crate) mod batching;
pub(crate) mod embedder;
pub(crate) mod memory;
