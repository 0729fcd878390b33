//! # membatch
//!
//! Run text-embedding models on CPU inside a memory limit without crashing
//! the host.
//!
//! ## Overview
//!
//! - [`Embedder`] is the small, object-safe trait every backend implements:
//!   embed a batch, and tell a batcher the facts it plans with (dimension,
//!   maximum sequence length, per-text token counts).
//! - [`BertEmbedder`] (feature `candle`) runs BERT-family sentence models such
//!   as all-MiniLM-L6-v2 on the CPU (weights read with candle, its own packed
//!   forward pass on `gemm`) and matches sentence-transformers' output; with
//!   [`Precision::Int8`] it holds the weights in a third of the memory.
//! - [`ModelSource`] finds a model: a local directory, or a Hugging Face hub
//!   repository through hf-hub's cache (offline with `HF_HUB_OFFLINE=1`).
//! - [`memory`] reads memory as a container counts it and turns it into a
//!   [`MemoryBudget`], [`PressureLevel`]s and the RAII [`MemoryGuard`].
//! - [`batch`] puts them together: [`BatchEmbedder`] embeds inputs of any
//!   size through any [`Embedder`], in length-ordered batches sized by an
//!   [`AdaptiveBatcher`] and a memory prediction, retried smaller instead of
//!   crashing.
//! - [`Config`] gathers every setting, from code or `EMBEDDING_*` variables.
//!
//! ## Examples
//!
//! ```no_run
//! use membatch::{BertEmbedder, Embedder};
//!
//! let embedder = BertEmbedder::builder().build()?;
//! let vectors = embedder.embed(&["The quick brown fox.", "A lazy dog."])?;
//! assert_eq!(vectors.len(), 2);
//! assert_eq!(vectors[0].len(), 384);
//! # Ok::<(), membatch::Error>(())
//! ```
//!
//! Any number of texts, inside the memory budget the environment sets:
//!
//! ```no_run
//! use membatch::{BatchEmbedder, Config};
//!
//! let batcher = BatchEmbedder::from_config(&Config::from_env()?)?;
//! let texts: Vec<String> = (0..10_000).map(|i| format!("document {i}")).collect();
//! for batch in batcher.stream(&texts)? {
//!     let batch = batch?;
//!     // write batch.embeddings out; batch.indices says which texts they are
//! }
//! # Ok::<(), membatch::Error>(())
//! ```
//!
//! ## Crate features
//!
//! - **`candle`** (default) — [`BertEmbedder`] (candle reads the weights,
//!   `gemm` runs the products), with `tokenizers` and the `hub` feature. Without it the crate is the
//!   backend-free core (trait, errors, model sources), so a service with
//!   another backend does not compile candle.
//! - **`hub`** (enabled by `candle`) — [`ModelSource::Hub`] fetches through
//!   `hf-hub`. Without it, hub sources return [`Error::Hub`].

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

// The README's examples are compiled as doctests.
#[cfg(all(doctest, feature = "candle"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod batch;
pub mod bench_support;
mod config;
mod embedder;
mod error;
pub mod memory;
pub mod source;

#[cfg(feature = "candle")]
pub mod bert;

#[cfg(test)]
mod test_util;

pub use batch::{AdaptiveBatcher, BatchConfig, BatchEmbedder};
pub use config::{
    Config, ConfigBuilder, ModelConfig, Precision, ENV_MAX_SEQ_LENGTH, ENV_NORMALIZE,
    ENV_PRECISION, ENV_THREADS,
};
pub use embedder::{Embedder, ModelShape};
pub use error::{BoxError, Error, ModelFileError, Result};
pub use memory::{MemoryBudget, MemoryConfig, MemoryGuard, PressureLevel};
pub use source::{HubModel, ModelSource};

#[cfg(feature = "candle")]
pub use bert::{BertEmbedder, BertEmbedderBuilder, OutputSettings, Pooling};
