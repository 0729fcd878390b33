pub(crate) mod embedder;
