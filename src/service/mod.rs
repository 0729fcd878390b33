//! One resident model for many callers.
//!
//! - [`EmbedService`] is a cheap `Clone + Send + Sync` handle in front of
//!   one [`Embedder`](crate::Embedder): callers on any thread submit texts
//!   and get their own vectors back, blocking or as a future that needs no
//!   particular runtime. Requests that arrive while a batch runs are merged
//!   into the next batches, sized by the memory prediction and adaptive
//!   rule of [`BatchEmbedder`](crate::BatchEmbedder); admission counts
//!   tokens and refuses at once what does not fit.
//! - [`Worker`] is the one thread that runs the forward passes; the
//!   builder starts it, or hands it back to run where the caller likes.
//! - [`LazyEmbedder`](crate::LazyEmbedder) loads a model on first use and frees it on demand or
//!   when idle ([`ServiceConfig::idle_unload`]), through a [`ModelLoader`](crate::ModelLoader).
//! - [`ServiceMetrics`] says what the service did, for a server to export.
//!
//! Runtime-agnostic: std threads, locks and a oneshot channel, no async
//! runtime. See `docs/service.md`.

mod config;
mod handle;
mod metrics;
mod pending;
mod queue;
mod worker;

pub use config::{ServiceConfig, ServiceConfigBuilder};
pub use handle::{EmbedService, EmbedServiceBuilder};
pub use metrics::{Histogram, Refusals, ServiceMetrics, UnloadReport, WorkCounts};
pub use pending::Pending;
pub use worker::Worker;
