//! BatchEmbedder with the real all-MiniLM-L6-v2: the pipeline's reordering,
//! batching and huge-text cut leave sentence-transformers' output unchanged.
//! `#[ignore]`d in a plain `cargo test` (they need the weights);
//! `scripts/test.sh` runs them.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use crate::common::{golden, max_abs_diff, real_model};
use membatch::batch::{BatchConfig, BatchEmbedder};
use membatch::memory::{MemoryBudget, MemoryConfig};
use membatch::Embedder;
use membatch_testkit::corpus::mixed_corpus;

fn pipeline<E: Embedder>(model: E) -> BatchEmbedder<E> {
    BatchEmbedder::new(
        model,
        MemoryBudget::new(MemoryConfig::default()),
        BatchConfig::default(),
    )
    .unwrap()
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn golden_texts_through_the_pipeline_match_sentence_transformers() {
    let g = golden();
    let model = real_model();
    let batcher = pipeline(&model);
    let mut out = vec![Vec::new(); g.texts.len()];
    // What the metrics must say, from sentence-transformers' own counts.
    let (mut tokens, mut padded) = (0, 0);
    for batch in batcher.stream(&g.texts).unwrap() {
        let batch = batch.unwrap();
        let counts: Vec<usize> = batch.indices.iter().map(|&i| g.token_counts[i]).collect();
        tokens += counts.iter().sum::<usize>() as u64;
        padded += (counts.len() * counts.iter().max().unwrap()) as u64;
        for (i, v) in batch.indices.into_iter().zip(batch.embeddings) {
            out[i] = v;
        }
    }
    for (i, (got, want)) in out.iter().zip(&g.embeddings).enumerate() {
        let d = max_abs_diff(got, want);
        assert!(d <= 1e-4, "text {i} {:?}: {d}", g.texts[i]);
    }
    let m = batcher.metrics();
    assert_eq!(m.texts, g.texts.len() as u64);
    assert_eq!((m.tokens, m.padded_tokens), (tokens, padded));
    assert!(
        (m.padding_ratio() - padded as f64 / tokens as f64).abs() < 1e-12,
        "{}",
        m.padding_ratio()
    );
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_huge_text_embeds_as_if_tokenised_whole() {
    let model = real_model();
    // ~1 MB of prose with other whitespace, CJK, accents and punctuation
    // mixed in: still small enough to tokenise whole for the comparison.
    let mut text = String::from("数据\u{3000}naïve café,\tthe\u{a0}start;\u{2003}");
    for (i, t) in mixed_corpus(3000, 9).iter().enumerate() {
        text.push_str(t);
        text.push_str(["\n", " ", "\u{3000}", "\t", "\u{a0}"][i % 5]);
    }
    assert!(text.len() > 1_000_000);
    let whole = model.embed(&[text.as_str()]).unwrap();
    let batcher = pipeline(&model);
    let piped = batcher.embed(&[text.as_str(), "short"]).unwrap();
    let d = max_abs_diff(&whole[0], &piped[0]);
    assert!(d <= 1e-6, "the cut changed the embedding by {d}");
    // The pipeline's tokens (what `token_counts` reports) are the whole
    // text's, from its prefix.
    let tokens = batcher.tokenize(&[text.as_str(), "short"]).unwrap();
    let whole_tokens = model.tokenize(&[text.as_str(), "short"]).unwrap();
    assert_eq!(tokens[0].ids(), whole_tokens[0].ids());
    assert!(tokens[0].is_truncated());
    assert_eq!(tokens[1].ids(), whole_tokens[1].ids());
    // And for texts whose cut lands at each kind of separator, including
    // the control characters BERT deletes (joining the words around them).
    for sep in [
        "\u{3000}", "\u{a0}", "\t", "\n", "\u{2003}", "\u{c}", "\u{b}", "\u{85}", ",", "数",
    ] {
        let words: Vec<String> = mixed_corpus(400, 4)
            .iter()
            .flat_map(|t| t.split(' ').map(String::from).collect::<Vec<_>>())
            .collect();
        let t = words.join(sep);
        let whole = model.embed(&[t.as_str()]).unwrap();
        let piped = batcher.embed(&[t.as_str()]).unwrap();
        let d = max_abs_diff(&whole[0], &piped[0]);
        assert!(d <= 1e-6, "separator {sep:?}: {d}");
    }
}
