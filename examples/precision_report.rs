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
use membatch::bench_support::mixed_corpus;
use membatch::{BertEmbedder, Embedder, ModelSource, Precision};

#[derive(Parser, Debug)]
struct Args {
    /// Texts in the mixed corpus (mixed_corpus(n, 42)).
    #[arg(long, default_value_t = 256)]
    texts: usize,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Embeds in batches of up to 32 texts, longest first, as the pipeline
/// would; returns vectors in input order and the seconds spent.
fn embed(model: &BertEmbedder, texts: &[&str]) -> Result<(Vec<Vec<f32>>, f64), membatch::Error> {
    let counts = model.token_counts(texts)?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(counts[*i]));
    let mut out = vec![Vec::new(); texts.len()];
    let start = Instant::now();
    for chunk in order.chunks(32) {
        let batch: Vec<&str> = chunk.iter().map(|i| texts[*i]).collect();
        for (i, v) in chunk.iter().zip(model.embed(&batch)?) {
            out[*i] = v;
        }
    }
    Ok((out, start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let golden: serde_json::Value = serde_json::from_slice(&std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/all-MiniLM-L6-v2.json"),
    )?)?;
    let golden: Vec<String> = serde_json::from_value(golden["texts"].clone())?;
    let corpus = mixed_corpus(args.texts, 42);
    let load = |p: Precision| -> Result<(BertEmbedder, u64), membatch::Error> {
        let before = rss_bytes();
        let m = BertEmbedder::builder()
            .source(ModelSource::from_env_or_default())
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
