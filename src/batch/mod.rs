//! Batching: any input size, inside the memory budget.
//!
//! - [`BatchSizeRule`] (the design's *adaptive batcher*) is the batch-size
//!   rule as a plain value: start at the minimum, grow by a step after each
//!   successful batch up to the maximum, halve under memory pressure
//!   ([`BatchConfig`], also from the `MEMBATCH_*` variables).
//! - [`CostModel`] predicts a batch's peak memory from its size and padded
//!   length, starting from the backend's [`CostPrior`](crate::CostPrior),
//!   and calibrates itself from measured batches.
//! - [`BatchEmbedder`] runs any [`Embedder`](crate::Embedder) through both:
//!   length-ordered batches that fit the
//!   [`MemoryBudget`](crate::memory::MemoryBudget), retried smaller when
//!   memory refuses them ([`RetryPolicy`]), with progress, metrics and a
//!   streaming form.
//!
//! This module has no candle dependency. See `docs/batching.md`.

mod config;
mod cost;
mod metrics;
mod pipeline;
mod plan;
mod retry;
mod rule;
mod run;
mod stream;

pub use config::{BatchConfig, BatchConfigBuilder, RetryPolicy};
pub use cost::CostModel;
pub use metrics::{BatchMetrics, Progress};
pub use pipeline::BatchEmbedder;
pub use rule::BatchSizeRule;
pub use stream::{BatchStream, EmbeddedBatch};

pub(crate) use plan::tokenize;
pub(crate) use run::{panic_message, Failed};
