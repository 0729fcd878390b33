//! Parity with sentence-transformers on the real all-MiniLM-L6-v2 weights.
//! These tests need the weights (scripts/fetch-model.sh), so they are
//! `#[ignore]`d in a plain `cargo test`; `scripts/test.sh` runs them, and
//! without the weights they fail, never skip.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use crate::common::{golden, max_abs_diff, real_model, real_model_with, token_counts, token_ids};
use membatch::{BertEmbedder, Embedder};

const TOL: f32 = 1e-4;

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn token_counts_and_ids_match_sentence_transformers() {
    let g = golden();
    let model = real_model();
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    assert_eq!(token_counts(&model, &texts), g.token_counts);
    assert_eq!(token_ids(&model, &texts), g.input_ids);
    assert_eq!(model.info().max_seq_length, 256);
    assert_eq!(model.info().dimension, 384);
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn embeddings_match_one_text_at_a_time() {
    let g = golden();
    let model = real_model();
    let mut worst = 0f32;
    for (i, text) in g.texts.iter().enumerate() {
        let got = model.embed(&[text.as_str()]).unwrap();
        let d = max_abs_diff(&got[0], &g.embeddings[i]);
        assert!(d <= TOL, "text {i} {text:?}: max abs diff {d}");
        worst = worst.max(d);
    }
    eprintln!("worst max abs diff, batch size 1: {worst:e}");
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn embeddings_match_in_one_padded_batch() {
    let g = golden();
    let model = real_model();
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let got = model.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    let mut worst = 0f32;
    for (i, (a, b)) in got.iter().zip(&g.embeddings).enumerate() {
        let d = max_abs_diff(a, b);
        assert!(d <= TOL, "text {i} {:?}: max abs diff {d}", texts[i]);
        worst = worst.max(d);
    }
    eprintln!("worst max abs diff, one batch of 40: {worst:e}");
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn unnormalized_output_matches_mean_pooling() {
    let g = golden();
    let model: BertEmbedder = real_model_with(BertEmbedder::builder().normalize(false));
    assert!(!model.settings().normalize);
    for row in &g.unnormalized_mean_pooled {
        let got = model.embed(&[row.text.as_str()]).unwrap();
        let d = max_abs_diff(&got[0], &row.embedding);
        assert!(
            d <= TOL,
            "text {} {:?}: max abs diff {d}",
            row.index,
            row.text
        );
    }
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_text_alone_equals_the_same_text_batched_with_long_ones() {
    let g = golden();
    let model = real_model();
    let short = "A man is eating food.";
    let long = g.texts.iter().max_by_key(|t| t.len()).unwrap();
    let alone = model.embed(&[short]).unwrap();
    let batched = model.embed(&[long, short, long]).unwrap();
    let d = max_abs_diff(&alone[0], &batched[1]);
    assert!(d <= 1e-5, "padding changed the embedding by {d}");
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_one_megabyte_text_is_truncated_not_a_failure() {
    let model = real_model();
    let huge = "memory ".repeat(150_000); // ~1 MB
    assert_eq!(token_counts(&model, &[&huge]), vec![256]);
    let v = model.embed(&[&huge]).unwrap();
    assert_eq!(v[0].len(), 384);
    assert!(v[0].iter().all(|x| x.is_finite()));
}
