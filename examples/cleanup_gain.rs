//! `cleanup_gain`: how much memory `malloc_trim` gives back after a large batch.
//!
//! Loads the default model and runs two workloads, each followed by
//! `AllocatorReclaim::trim` (`malloc_trim`): one large batch (64 texts of 256 tokens), then
//! a run of 24 batches of 8 to 64 mixed-length texts. Prints RSS before, at
//! the peak, after the work and after the trim, as JSON lines. The figures in
//! `docs/memory.md` come from this program.

use membatch::memory::{AllocatorReclaim, MemoryProbe, SystemProbe};
use membatch::{BertEmbedder, Embedder};
use membatch_testkit::corpus::mixed_corpus;
use serde_json::json;

fn main() -> membatch::Result<()> {
    let probe = SystemProbe::new();
    let model = BertEmbedder::builder().build()?;
    let text = "memory limits keep embedding services alive ".repeat(60);
    let batch: Vec<&str> = vec![text.as_str(); 64];
    // Warm up once so the model's pages are resident before measuring.
    model.embed(&batch[..1])?;
    AllocatorReclaim.trim();

    measure(&probe, "64 texts x 256 tokens", || {
        model.embed(&batch).map(drop)
    })?;

    let corpus = mixed_corpus(24 * 36, 7);
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    measure(&probe, "24 mixed batches of 8..64 texts", || {
        let mut start = 0;
        for i in 0..24 {
            let size = 8 + (i * 29) % 57; // 8..=64, varied
            let end = (start + size).min(texts.len());
            drop(model.embed(&texts[start..end])?);
            start = end;
        }
        Ok(())
    })
}

/// Runs `work`, then trims, and prints RSS before, at the peak, after the
/// work and after the trim (MiB) as one JSON line.
fn measure(
    probe: &SystemProbe,
    label: &str,
    work: impl FnOnce() -> membatch::Result<()>,
) -> membatch::Result<()> {
    let mib = |b: Option<u64>| b.unwrap_or(0) as f64 / (1u64 << 20) as f64;
    let before = probe.snapshot().rss_bytes;
    probe.reset_peak();
    work()?;
    let after_work = probe.snapshot();
    let trimmed = AllocatorReclaim.trim();
    let after_trim = probe.snapshot().rss_bytes;
    println!(
        "{}",
        json!({
            "work": label,
            "rss_before_mib": mib(before),
            "rss_peak_mib": mib(after_work.peak_rss_bytes),
            "rss_after_work_mib": mib(after_work.rss_bytes),
            "rss_after_trim_mib": mib(after_trim),
            "trim_released_memory": trimmed,
            "released_mib": mib(after_work.rss_bytes) - mib(after_trim),
        })
    );
    Ok(())
}
