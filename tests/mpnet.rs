//! Parity with sentence-transformers on the real all-mpnet-base-v2 weights
//! (438 MB). Ignored in a plain `cargo test`; `scripts/test.sh` fetches the
//! weights (`scripts/fetch-model.sh all-mpnet-base-v2`) and runs them with
//! `--ignored`, and they fail, never skip, when the weights are missing.
#![cfg(feature = "candle")]

mod common;

use common::{fetched_model, golden_file, max_abs_diff, GoldenRow};
use membatch::{BertEmbedder, Embedder, Precision};
use serde::Deserialize;

const TOL: f32 = 1e-4;
const WHY: &str = "needs all-mpnet-base-v2 (438 MB): scripts/test.sh fetches it and runs this";

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
    let _ = WHY;
    let g = golden();
    let model = mpnet(BertEmbedder::builder());
    assert_eq!(model.dimension(), 768);
    assert_eq!(model.max_seq_length(), 384);
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    assert_eq!(model.token_ids(&texts).unwrap(), g.input_ids);
    assert_eq!(model.token_counts(&texts).unwrap(), g.token_counts);

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
