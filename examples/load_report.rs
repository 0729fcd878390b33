//! `load_report`: what loading a model costs, estimated and measured, as
//! one JSON object.
//!
//! ```text
//! cargo run --release --example load_report
//! MEMBATCH_MODEL=path/to/model MEMBATCH_PRECISION=int8 cargo run --release --example load_report
//! ```
//!
//! It reads the model's configuration and tokenizer, then measures the
//! process's resident memory around loading the weights (the part
//! [`membatch::memory::LoadEstimate`] estimates): the peak rise while
//! loading and what stays. It then embeds a few texts, unloads the model,
//! and loads it again, measuring the second load the same way. Keys:
//! `estimate` (`resident_bytes`, `transient_bytes`, `first_batch_bytes`,
//! `on_demand_bytes`, `peak_bytes`, `needed_bytes`), `load` and `reload`
//! (`rss_before_bytes`, `peak_rise_bytes`, `held_rise_bytes`,
//! `figure_before_bytes`), `rss_after_unload_bytes`, `budget_bytes`.
//! The real-limit tests read it.

use std::process::ExitCode;

use membatch::memory::MemoryBudget;
use membatch::{BertEmbedderBuilder, Embedder};
use serde_json::json;

fn main() -> ExitCode {
    match run() {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load_report: {}", membatch::ErrorReport::new(&e));
            ExitCode::FAILURE
        }
    }
}

fn run() -> membatch::Result<serde_json::Value> {
    // As membatch's tools do: one malloc heap, so an unload gives it all back.
    membatch::memory::single_malloc_arena();
    let config = membatch::Config::from_env()?;
    let budget = MemoryBudget::new(config.memory().clone());
    let probe = budget.probe().clone();
    let builder = BertEmbedderBuilder::from(config.model().clone()).budget(budget.clone());
    let estimate = builder.load_estimate()?;
    let model = builder.build_lazy()?;

    let load = || -> membatch::Result<serde_json::Value> {
        membatch::memory::AllocatorReclaim.trim();
        let before = probe.snapshot();
        let figure_before = budget.read().figure_bytes;
        let peak_counted = probe.reset_peak();
        model.load()?;
        let after = probe.snapshot();
        let rss_before = before.rss_bytes.unwrap_or(0);
        Ok(json!({
            "rss_before_bytes": rss_before,
            "peak_rise_bytes": peak_counted
                .then(|| after.peak_rss_bytes.unwrap_or(0).saturating_sub(rss_before)),
            "held_rise_bytes": after.rss_bytes.unwrap_or(0).saturating_sub(rss_before),
            "figure_before_bytes": figure_before,
        }))
    };
    let first = load()?;
    let texts: Vec<String> = (0..32)
        .map(|i| format!("text number {i} about loading a model inside a memory limit"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs)?;
    model.unload();
    let rss_after_unload = probe.snapshot().rss_bytes;
    let reload = load()?;
    Ok(json!({
        "model": config.model().source.as_ref().map(|s| s.to_string()),
        "precision": config.model().precision.to_string(),
        "estimate": {
            "resident_bytes": estimate.resident_bytes,
            "transient_bytes": estimate.transient_bytes,
            "first_batch_bytes": estimate.first_batch_bytes,
            "on_demand_bytes": estimate.on_demand_bytes,
            "peak_bytes": estimate.peak_bytes(),
            "needed_bytes": estimate.needed_bytes(),
        },
        "load": first,
        "rss_after_unload_bytes": rss_after_unload,
        "reload": reload,
        "budget_bytes": budget.read().budget_bytes,
    }))
}
