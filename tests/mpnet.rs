//! Parity with sentence-transformers on the real all-mpnet-base-v2 weights
//! (438 MB). Ignored in a plain `cargo test`; `scripts/test.sh` fetches the
//! weights (`scripts/fetch-model.sh all-mpnet-base-v2`) and runs them with
//! `--include-ignored`, and they fail, never skip, when the weights are
//! missing. Alone in its test binary: it holds hundreds of MiB, and one
//! test reads the process's memory, which others would move under it.
#![cfg(feature = "candle")]

mod common;

use common::{fetched_model, golden_file, max_abs_diff, token_counts, token_ids, GoldenRow};
use membatch::memory::{MemoryBudget, MemoryConfig};
use membatch::{BertEmbedder, BertReranker, Embedder, ModelSource, Precision, Reranker};
use serde::Deserialize;

const TOL: f32 = 1e-4;

/// One test at a time: each holds hundreds of MiB, and the budget test reads
/// the process's memory, which the others would move under it.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Deserialize)]
struct Golden {
    texts: Vec<String>,
    token_counts: Vec<usize>,
    input_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
    unnormalized_mean_pooled: Vec<GoldenRow>,
}

fn golden() -> Golden {
    golden_file("all-mpnet-base-v2.json")
}

fn mpnet(builder: membatch::BertEmbedderBuilder) -> BertEmbedder {
    fetched_model("all-mpnet-base-v2", builder.threads(2))
}

#[test]
#[ignore = "needs all-mpnet-base-v2 (438 MB): scripts/test.sh fetches it and runs this"]
fn mpnet_tokens_and_embeddings_match_sentence_transformers() {
    let _one = one_at_a_time();
    let g = golden();
    let model = mpnet(BertEmbedder::builder());
    assert_eq!(model.info().dimension, 768);
    assert_eq!(model.info().max_seq_length, 384);
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    assert_eq!(token_ids(&model, &texts), g.input_ids);
    assert_eq!(token_counts(&model, &texts), g.token_counts);

    // One text at a time, as the reference was computed.
    let mut worst = 0f32;
    for (i, text) in texts.iter().enumerate() {
        let got = model.embed(&[text]).unwrap();
        let d = max_abs_diff(&got[0], &g.embeddings[i]);
        assert!(d <= TOL, "text {i} {text:?}: max abs diff {d}");
        worst = worst.max(d);
    }
    // All forty packed into one batch.
    let got = model.embed(&texts).unwrap();
    for (i, (a, b)) in got.iter().zip(&g.embeddings).enumerate() {
        let d = max_abs_diff(a, b);
        assert!(d <= TOL, "text {i} in one batch: max abs diff {d}");
        worst = worst.max(d);
    }
    eprintln!("all-mpnet-base-v2: worst max abs diff {worst:e}");
}

#[test]
#[ignore = "needs all-mpnet-base-v2 (438 MB): scripts/test.sh fetches it and runs this"]
fn mpnet_unnormalized_output_and_int8_stay_close() {
    let _one = one_at_a_time();
    let g = golden();
    let plain = mpnet(BertEmbedder::builder().normalize(false));
    for row in &g.unnormalized_mean_pooled {
        let got = plain.embed(&[row.text.as_str()]).unwrap();
        let d = max_abs_diff(&got[0], &row.embedding);
        assert!(d <= TOL, "text {}: max abs diff {d}", row.index);
    }
    drop(plain);
    let int8 = mpnet(BertEmbedder::builder().precision(Precision::Int8));
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let got = int8.embed(&texts).unwrap();
    let worst = got
        .iter()
        .zip(&g.embeddings)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
        .fold(1f32, f32::min);
    assert!(worst >= 0.99, "int8 MPNet: minimum cosine to f32 {worst}");
}

/// A budget `room` bytes above what the process holds now.
fn budget_with_room(room: u64) -> MemoryBudget {
    let now = MemoryBudget::new(MemoryConfig::default())
        .read()
        .figure_bytes;
    MemoryBudget::new(
        MemoryConfig::builder()
            .max_bytes(now + room)
            .build()
            .unwrap(),
    )
}

#[test]
#[ignore = "needs all-mpnet-base-v2 (438 MB): scripts/test.sh fetches it and runs this"]
fn models_resident_together_share_one_budget() {
    let _one = one_at_a_time();
    const MIB: u64 = 1 << 20;
    // An embedder and a reranker resident together: what they hold is in the
    // process's figure, so each load is checked against what is left.
    let embedder = fetched_model("sre-embedding-model", BertEmbedder::builder());
    let reranker = BertReranker::load(ModelSource::dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models/tiny-bert-reranker"),
    ))
    .unwrap();
    let budget = budget_with_room(300 * MIB);
    // all-mpnet-base-v2 in f32 holds 418 MiB: refused before a byte is read.
    let err = BertEmbedder::builder()
        .source(ModelSource::dir(common::fetched_model_dir(
            "all-mpnet-base-v2",
        )))
        .budget(budget.clone())
        .build()
        .unwrap_err();
    let membatch::Error::ModelTooLarge {
        needed, available, ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(
        needed > available && available <= 300 * MIB,
        "{needed} > {available}"
    );
    // A MiniLM (87 MiB of weights) fits in the same room, beside the others.
    let second = fetched_model("all-MiniLM-L6-v2", BertEmbedder::builder().budget(budget));
    let a = embedder.embed(&["resident together"]).unwrap();
    let b = second.embed(&["resident together"]).unwrap();
    assert_eq!(a[0].len(), b[0].len());
    assert_eq!(reranker.score("q", &["d"]).unwrap().len(), 1);
}
