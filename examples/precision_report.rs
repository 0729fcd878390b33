//! `precision_report`: what int8 costs in quality against f32, on the
//! golden texts and a mixed corpus, and what it saves in weight memory.
//!
//! ```text
//! cargo run --release --example precision_report -- [--texts 256]
//! ```
//!
//! Prints cosine similarity between each text's int8 and f32 embeddings
//! (minimum, mean), each model's resident weight bytes after load, and the
//! embedding time of each over the mixed corpus.

use std::time::Instant;

use clap::Parser;
use membatch::memory::{MemoryProbe, SystemProbe};
use membatch::{BatchConfig, BatchEmbedder, BertEmbedder, MemoryBudget, Precision};
use membatch_testkit::corpus::{cosine, mixed_corpus};

#[derive(Parser, Debug)]
struct Args {
    /// Texts in the mixed corpus (mixed_corpus(n, 42)).
    #[arg(long, default_value_t = 256)]
    texts: usize,
}

/// Embeds through `BatchEmbedder` (longest first, default budget), as an
/// application would; returns vectors in input order and the seconds spent.
fn embed(model: &BertEmbedder, texts: &[&str]) -> Result<(Vec<Vec<f32>>, f64), membatch::Error> {
    let batcher = BatchEmbedder::new(
        model,
        MemoryBudget::new(membatch::Config::from_env()?.memory().clone()),
        BatchConfig::default(),
    )?;
    let start = Instant::now();
    let vectors = batcher.embed(texts)?;
    Ok((vectors, start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let golden: serde_json::Value = serde_json::from_slice(&std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/all-MiniLM-L6-v2.json"),
    )?)?;
    let golden: Vec<String> = serde_json::from_value(golden["texts"].clone())?;
    let corpus = mixed_corpus(args.texts, 42);
    let probe = SystemProbe::new();
    let rss_bytes = || probe.snapshot().rss_bytes.unwrap_or(0);
    let load = |p: Precision| -> Result<(BertEmbedder, u64), membatch::Error> {
        let before = rss_bytes();
        let m = membatch::BertEmbedderBuilder::from(membatch::Config::from_env()?.model().clone())
            .precision(p)
            .build()?;
        Ok((m, rss_bytes().saturating_sub(before)))
    };
    let (f32_model, f32_rss) = load(Precision::F32)?;
    let (int8_model, int8_rss) = load(Precision::Int8)?;
    println!("| set | texts | min cosine | mean cosine | f32 time | int8 time |");
    println!("|---|---|---|---|---|---|");
    for (name, texts) in [("golden", &golden), ("mixed corpus", &corpus)] {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (a, ta) = embed(&f32_model, &texts)?;
        let (b, tb) = embed(&int8_model, &texts)?;
        let cos: Vec<f64> = a.iter().zip(&b).map(|(x, y)| cosine(x, y)).collect();
        let min = cos.iter().cloned().fold(f64::INFINITY, f64::min);
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        println!(
            "| {name} | {} | {min:.5} | {mean:.5} | {ta:.2} s | {tb:.2} s |",
            texts.len()
        );
    }
    println!();
    println!(
        "resident growth while loading: f32 {:.1} MiB, int8 {:.1} MiB",
        f32_rss as f64 / (1 << 20) as f64,
        int8_rss as f64 / (1 << 20) as f64
    );
    Ok(())
}
