//! `BertEmbedder` throughput at fixed batch sizes on the mixed-length corpus.
//!
//! Needs the real model (scripts/fetch-model.sh). The corpus is
//! `mixed_corpus(MEMBATCH_BENCH_TEXTS (default 64), 42)`, embedded in input
//! order in fixed batches: the plain baseline later batching work improves on.
//! Two groups report the same runs as texts/s and as tokens/s (real tokens,
//! special tokens included, padding excluded). A third compares the weight
//! precisions (f32, int8) on the same corpus ordered longest first, in
//! batches of 32, as the pipeline runs it.

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use membatch::{BertEmbedder, Embedder, ModelSource, Precision};
use membatch_testkit::corpus::mixed_corpus;

const BATCH_SIZES: [usize; 4] = [8, 16, 32, 64];

fn embed_in_batches(model: &BertEmbedder, texts: &[&str], batch: usize) -> usize {
    texts
        .chunks(batch)
        .map(|chunk| model.embed(chunk).expect("embed").len())
        .sum()
}

/// `MEMBATCH_MODEL`, else the default model.
fn source() -> ModelSource {
    membatch::Config::from_env()
        .expect("valid MEMBATCH_* settings")
        .model()
        .source
        .clone()
        .unwrap_or_else(ModelSource::default_model)
}

fn bench_embedder(c: &mut Criterion) {
    let model =
        BertEmbedder::load(source()).expect("the real model is needed: run scripts/fetch-model.sh");
    let n: usize = std::env::var("MEMBATCH_BENCH_TEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let corpus = mixed_corpus(n, 42);
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let tokens: usize = model
        .tokenize(&texts)
        .unwrap()
        .iter()
        .map(|t| t.len())
        .sum();
    eprintln!(
        "corpus: {} texts, {} tokens ({:.1} per text), threads: {}",
        texts.len(),
        tokens,
        tokens as f64 / texts.len() as f64,
        rayon_threads()
    );

    for (group_name, throughput) in [
        ("bert_embed_texts", Throughput::Elements(texts.len() as u64)),
        ("bert_embed_tokens", Throughput::Elements(tokens as u64)),
    ] {
        let mut group = c.benchmark_group(group_name);
        // Each iteration is seconds long: ten flat samples are plenty.
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.throughput(throughput);
        for batch in BATCH_SIZES {
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
                b.iter(|| embed_in_batches(&model, &texts, batch))
            });
        }
        group.finish();
    }
}

fn bench_precision(c: &mut Criterion) {
    let n: usize = std::env::var("MEMBATCH_BENCH_TEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let corpus = mixed_corpus(n, 42);
    let mut group = c.benchmark_group("bert_precision_tokens");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for precision in [Precision::F32, Precision::Int8] {
        let model = BertEmbedder::builder()
            .source(source())
            .precision(precision)
            .build()
            .expect("the real model is needed: run scripts/fetch-model.sh");
        let mut texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
        let counts = model
            .tokenize(&texts)
            .unwrap()
            .iter()
            .map(|t| t.len())
            .collect::<Vec<usize>>();
        let tokens: usize = counts.iter().sum();
        let mut order: Vec<(usize, &str)> = counts.into_iter().zip(texts).collect();
        order.sort_by_key(|(c, _)| std::cmp::Reverse(*c));
        texts = order.into_iter().map(|(_, t)| t).collect();
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_function(BenchmarkId::from_parameter(precision), |b| {
            b.iter(|| embed_in_batches(&model, &texts, 32))
        });
    }
    group.finish();
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into())
}

criterion_group!(benches, bench_embedder, bench_precision);
