//! The int8 option on the real all-MiniLM-L6-v2 weights: its quality
//! against sentence-transformers' reference vectors, on the golden texts and
//! on a mixed corpus against membatch's own f32 output. Needs the weights
//! (scripts/fetch-model.sh), so `#[ignore]`d in a plain `cargo test`;
//! `scripts/test.sh` runs them, and without the weights they fail.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use crate::common::{golden, real_model, real_model_with};
use membatch::{BertEmbedder, Embedder, Precision};
use membatch_testkit::corpus::{cosine, mixed_corpus};

/// (min, mean) cosine between matching rows.
fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let cos: Vec<f64> = a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect();
    let min = cos.iter().cloned().fold(f64::INFINITY, f64::min);
    (min, cos.iter().sum::<f64>() / cos.len() as f64)
}

fn int8() -> BertEmbedder {
    real_model_with(BertEmbedder::builder().precision(Precision::Int8))
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn int8_stays_within_the_quality_bar_on_the_golden_texts() {
    let g = golden();
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let got = int8().embed(&texts).unwrap();
    let (min, mean) = agreement(&got, &g.embeddings);
    eprintln!("int8 vs sentence-transformers, golden: min {min:.5}, mean {mean:.5}");
    assert!(min >= 0.995 && mean >= 0.999, "min {min}, mean {mean}");
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn int8_stays_within_the_quality_bar_on_a_mixed_corpus() {
    let corpus = mixed_corpus(64, 7);
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let want = real_model().embed(&texts).unwrap();
    let got = int8().embed(&texts).unwrap();
    let (min, mean) = agreement(&got, &want);
    eprintln!("int8 vs f32, mixed corpus: min {min:.5}, mean {mean:.5}");
    assert!(min >= 0.995 && mean >= 0.999, "min {min}, mean {mean}");
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn int8_is_not_f32_and_keeps_unit_vectors() {
    let texts = ["A man is eating food.", "東京は日本の首都です。"];
    let a = real_model().embed(&texts).unwrap();
    let b = int8().embed(&texts).unwrap();
    assert_ne!(a, b, "the int8 option must actually quantise");
    for v in &b {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}
