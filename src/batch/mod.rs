//! Batching: any input size, inside the memory budget.
//!
//! - [`AdaptiveBatcher`] is the batch-size rule as a plain value: start at
//!   the minimum, grow by a step after each successful batch up to the
//!   maximum, halve under memory pressure ([`BatchConfig`], also from
//!   `EMBEDDING_*` variables).
//! - [`CostModel`] predicts a batch's peak memory from its size, padded
//!   length and the model's shape, and calibrates itself from measured
//!   batches.
//! - [`BatchEmbedder`] runs any [`Embedder`](crate::Embedder) through both:
//!   length-ordered batches that fit the [`MemoryBudget`](crate::MemoryBudget),
//!   retried smaller when memory refuses them, with progress, metrics and a
//!   streaming form.
//!
//! This module has no candle dependency. See `docs/batching.md`.

mod cost;
mod pipeline;
mod plan;
mod rule;

pub use cost::CostModel;
pub use pipeline::{BatchEmbedder, BatchMetrics, BatchStream, EmbeddedBatch, Progress};
pub(crate) use rule::parse_bool;
pub use rule::{
    AdaptiveBatcher, BatchConfig, BatchConfigBuilder, ENV_ADAPTIVE_BATCHING, ENV_BATCH_STEP,
    ENV_MAX_BATCH_SIZE, ENV_MAX_BATCH_TOKENS, ENV_MIN_BATCH_SIZE,
};
