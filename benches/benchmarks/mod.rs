pub(crate) mod embedder;
pub(crate) mod memory;
