//! membatch's integration tests, one module per behaviour, in one test
//! binary: each binary links the whole crate and its dependencies, so one
//! binary instead of one per file is most of a cold build's link time.
//!
//! Tests that need the real model weights are `#[ignore]`d, so a plain
//! `cargo test` passes offline on a fresh clone; `scripts/test.sh` fetches
//! the weights and runs them with `--include-ignored`, and without the
//! weights they fail, never skip.
//!
//! Suites that must run alone have binaries of their own beside this one:
//! `real_limits` (root: real memory cgroups), `mpnet` (438 MB of weights,
//! and a budget read from the process's own memory), `service_unload` (the
//! process's RSS), `hostile_inputs` (a child's peak RSS, which counts the
//! memory of the process that started it) and `default_source`
//! (process-wide environment variables).

#[cfg(feature = "candle")]
#[path = "../common/mod.rs"]
mod common;
#[path = "../fakes/mod.rs"]
mod fakes;

mod batch_pipeline;
mod batch_props;
mod bounds;
mod layering;
mod memory_budget;
mod service;

// The BERT backend (each module is empty without the `candle` feature).
mod bert_memory;
mod bert_tiny;
mod embed_cli;
mod encoder_reference;
mod families;
mod model_errors;
mod model_source;

// Real weights (`#[ignore]`d; scripts/test.sh runs them).
mod batch_real;
mod golden;
mod int8_real;
mod model_variants;
mod service_real;
