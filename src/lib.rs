//! # membatch
//!
//! Run text-embedding models on CPU inside a memory limit without crashing
//! the host.
//!
//! ## Overview
//!
//! - [`Embedder`] is the small, object-safe trait every backend implements:
//!   tokenize texts once ([`Tokens`]), embed a batch of tokens, and describe
//!   the model in one [`ModelInfo`] (dimension, maximum sequence length,
//!   cost prior) that a batcher plans with.
//! - [`BertEmbedder`] (feature `candle`) runs BERT-family sentence models such
//!   as all-MiniLM-L6-v2 on the CPU (weights read with candle, its own packed
//!   forward pass on `gemm`) and matches sentence-transformers' output; with
//!   [`Precision::Int8`] it holds the weights in a third of the memory.
//! - [`ModelSource`] finds a model: a local directory, or a Hugging Face hub
//!   repository through hf-hub's cache (offline with `HF_HUB_OFFLINE=1`).
//! - [`memory`] reads memory as a container counts it and turns it into a
//!   [`MemoryBudget`], [`PressureLevel`]s and the RAII [`MemoryGuard`].
//! - [`batch`] puts them together: [`BatchEmbedder`] embeds inputs of any
//!   size through any [`Embedder`], in length-ordered batches sized by the
//!   adaptive [`BatchSizeRule`] and a memory
//!   prediction, retried smaller instead of crashing.
//! - [`service`] keeps one model resident for many callers:
//!   [`EmbedService`] merges concurrent requests into batches, refuses what
//!   does not fit at once, and loads and unloads the model
//!   ([`LazyEmbedder`]).
//! - [`Config`] gathers every setting, from code or the `MEMBATCH_*`
//!   variables; [`settings`] is the table of them all (names, variables,
//!   flags, defaults).
//!
//! The core (`error`, `embedder`, `memory`, `batch`, `service`, `config`) never names
//! a backend: [`BertEmbedder`] is one implementation of [`Embedder`] among
//! any others.
//!
//! ## Examples
//!
//! ```no_run
//! # #[cfg(feature = "candle")] {
//! use membatch::{BertEmbedder, Embedder};
//!
//! let embedder = BertEmbedder::builder().build()?;
//! let vectors = embedder.embed(&["The quick brown fox.", "A lazy dog."])?;
//! assert_eq!(vectors.len(), 2);
//! assert_eq!(vectors[0].len(), 384);
//! # }
//! # Ok::<(), membatch::Error>(())
//! ```
//!
//! Any number of texts, inside the memory budget the environment sets:
//!
//! ```no_run
//! # #[cfg(feature = "candle")] {
//! use membatch::{BatchEmbedder, Config};
//!
//! let config = Config::from_env()?;
//! // The model loads under the budget its batches then share.
//! let batcher = BatchEmbedder::load(&config)?;
//! let texts: Vec<String> = (0..10_000).map(|i| format!("document {i}")).collect();
//! for batch in batcher.stream(&texts)? {
//!     let batch = batch?;
//!     // write batch.embeddings out; batch.indices says which texts they are
//! }
//! # }
//! # Ok::<(), membatch::Error>(())
//! ```
//!
//! ## Crate features
//!
//! - **`candle`** (default) — [`BertEmbedder`] (candle reads the weights,
//!   `gemm` runs the products, `tokenizers` splits the texts). Without it
//!   the crate is the backend-free core (trait, errors, memory, batching,
//!   configuration, model sources), so a service with another backend does
//!   not compile candle.
//! - **`hub`** (default) — [`ModelSource::Hub`] fetches through `hf-hub`
//!   (with its HTTP and TLS stack). Without it, hub sources return
//!   [`Error::Hub`] and only local model directories load: offline users
//!   build with `default-features = false, features = ["candle"]`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The README's examples are compiled as doctests.
#[cfg(all(doctest, feature = "candle"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The core, leaves first: each module uses only those above it (checked by
// tests/it/layering.rs).
pub mod batch;
mod config;
mod embedder;
mod env;
mod error;
pub mod memory;
mod model_config;
mod precision;
mod pressure;
pub mod rerank;
pub mod service;
pub mod settings;
mod source;

// A backend.
#[cfg(feature = "candle")]
#[cfg_attr(docsrs, doc(cfg(feature = "candle")))]
pub mod bert;

#[cfg(feature = "candle")]
mod assemble;

#[cfg(test)]
mod test_util;

/// The fuzz targets' bodies (`fuzz/`), compiled under `--cfg fuzzing`
/// (which `cargo fuzz` sets) and for the crate's own tests. Not part of
/// membatch's interface.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;

pub use batch::{BatchConfig, BatchEmbedder, BatchSizeRule, RetryPolicy};
pub use config::{Config, ConfigBuilder};
pub use embedder::{
    CostPrior, EmbedOptions, Embedder, LazyEmbedder, ModelInfo, ModelLoader, ModelShape,
    ModelState, Prompt, Reranker, Tokens, Truncation,
};
pub use error::{BoxError, Error, ErrorReport, ModelFileError, Result};
pub use memory::{MemoryBudget, MemoryConfig, MemoryGuard};
pub use model_config::ModelConfig;
pub use precision::{ParsePrecisionError, Precision};
pub use pressure::{PressureLevel, PressureThresholds};
pub use service::EmbedService;
pub use source::{HubModel, ModelFiles, ModelSource};
// Where `scripts/fetch-model.sh` places the default model, for membatch's
// own tests: not part of the API.
#[doc(hidden)]
pub use source::{default_model_dir, DEFAULT_MODEL};

#[cfg(feature = "candle")]
#[cfg_attr(docsrs, doc(cfg(feature = "candle")))]
pub use bert::{
    BertEmbedder, BertEmbedderBuilder, BertLoader, BertReranker, OutputSettings, Pooling,
    TokenCounter,
};
