//! Unloading the real model gives its memory back (alone in its test
//! binary, so no other test's allocations blur the RSS figures). Needs the
//! real weights: `#[ignore]`d in a plain `cargo test`, run by
//! `scripts/test.sh`.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

mod common;

use std::time::Duration;

use membatch::memory::{MemoryProbe, SystemProbe};
use membatch::service::EmbedService;
use membatch::{BertEmbedder, Embedder, ModelSource};

fn rss() -> u64 {
    SystemProbe::new()
        .snapshot()
        .rss_bytes
        .expect("RSS on this platform")
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_lazy_real_model_loads_on_first_use_and_unload_frees_its_weights() {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let lazy = BertEmbedder::builder()
        .source(ModelSource::default_model())
        .build_lazy()
        .unwrap_or_else(|e| {
            panic!(
                "the real model is required (scripts/fetch-model.sh): {}",
                e.report()
            )
        });
    assert_eq!(lazy.info().dimension, 384);
    let svc = EmbedService::builder(lazy).spawn().unwrap();
    assert_eq!(svc.model_state().as_str(), "unloaded");
    let before = rss();
    let v = svc
        .embed_timeout(&["load me"], Duration::from_secs(120))
        .unwrap();
    assert_eq!(v[0].len(), 384);
    let loaded = rss();
    assert!(svc.model_state().is_loaded());
    let report = svc.unload();
    assert!(report.freed);
    let after = report.rss_after_bytes.unwrap();
    eprintln!(
        "RSS: {:.1} MiB before the first request, {:.1} MiB loaded, {:.1} MiB after unload \
         (figure {:.1} -> {:.1} MiB)",
        mib(before),
        mib(loaded),
        mib(after),
        mib(report.figure_before_bytes),
        mib(report.figure_after_bytes)
    );
    // all-MiniLM-L6-v2's f32 weights without the word table (whose rows are
    // read as texts use them) are over 40 MiB: loading adds most of them,
    // unloading gives most of them back.
    assert!(loaded > before + (35 << 20), "loading added too little");
    assert!(
        report.rss_before_bytes.unwrap() - after > 35 << 20,
        "unload freed only {:.1} MiB",
        mib(report.rss_before_bytes.unwrap() - after)
    );
    // The next request loads again.
    svc.embed_timeout(&["again"], Duration::from_secs(120))
        .unwrap();
    assert!(svc.model_state().is_loaded());
    svc.shutdown(Duration::from_secs(10));
}
