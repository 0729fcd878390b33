//! What BatchEmbedder adds around the forward passes: token-count bookkeeping,
//! length ordering, one plan, one budget reading and one guard per batch.
//! Measured over 100k texts with a backend that does no work, so the figure
//! is the whole overhead (to set against ~10 s per forward pass of 64 texts).

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use membatch::batch::{BatchConfig, BatchEmbedder};
use membatch::memory::{MemoryBudget, MemoryConfig};
use membatch::{CostPrior, Embedder, ModelInfo, Result, Tokens};
use membatch_testkit::corpus::mixed_corpus;

/// Does no work: tokens are words + 2 (capped at 256), vectors are empty.
struct Free;

impl Embedder for Free {
    /// What membatch's encoder says for all-MiniLM-L6-v2.
    fn info(&self) -> ModelInfo {
        ModelInfo::new(384, 256).with_cost_prior(CostPrior::new(4 * (5 * 384 + 1536), 4))
    }
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        Ok(texts
            .iter()
            .map(|t| Tokens::new(vec![0; (t.split(' ').count() + 2).min(256)]))
            .collect())
    }
    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        Ok(vec![Vec::new(); batch.len()])
    }
}

fn bench_planning(c: &mut Criterion) {
    let corpus = mixed_corpus(100_000, 42);
    let mut group = c.benchmark_group("batch_planning");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(corpus.len() as u64));
    group.bench_function("100k_texts", |b| {
        b.iter(|| {
            // A fresh pipeline each time, so the rule starts again at 8.
            let budget = MemoryBudget::new(MemoryConfig::default());
            let batcher = BatchEmbedder::new(Free, budget, BatchConfig::default()).unwrap();
            let n = batcher.embed(&corpus).unwrap().len();
            (n, batcher.metrics().batches)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_planning);
