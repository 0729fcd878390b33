//! Encoder families beyond BERT, on tiny synthetic checkpoints (random
//! weights, small vocabularies) committed under `tests/fixtures/models/`
//! with reference outputs computed once with sentence-transformers and
//! transformers by `scripts/reference/synthetic.py`. No downloads: these run
//! in every `cargo test`.
#![cfg(feature = "candle")]

use std::path::{Path, PathBuf};

use crate::common::{assert_close, copy_dir, max_abs_diff, prompted_token_counts};

use membatch::memory::{MemoryBudget, MemoryConfig};
use membatch::rerank::rerank_in_batches;
use membatch::{
    BatchConfig, BertEmbedder, BertReranker, EmbedOptions, Embedder, ModelSource, Pooling, Reranker,
};
use serde::Deserialize;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// The reference outputs of an embedding fixture.
#[derive(Deserialize)]
struct Reference {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
    max_seq_length: usize,
    embedding_dim: usize,
    #[serde(default)]
    cls: Vec<Vec<f32>>,
    #[serde(default)]
    query: Vec<Vec<f32>>,
    #[serde(default)]
    query_input_ids: Vec<Vec<u32>>,
    #[serde(default)]
    passage: Vec<Vec<f32>>,
}

fn reference<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = fixture(name).join("reference.json");
    serde_json::from_slice(&std::fs::read(&path).expect("read reference.json"))
        .expect("parse reference.json")
}

/// Token ids, and embeddings one text at a time and all in one batch.
fn check_embeddings(name: &str, model: &BertEmbedder, r: &Reference) {
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    assert_eq!(model.info().dimension, r.embedding_dim, "{name}");
    assert_eq!(model.info().max_seq_length, r.max_seq_length, "{name}");
    let tokens = model.tokenize(&texts).unwrap();
    let ids: Vec<Vec<u32>> = tokens.iter().map(|t| t.ids().to_vec()).collect();
    assert_eq!(ids, r.input_ids, "{name}");
    // The forward pass runs the tokens it is given, nothing else.
    let refs: Vec<&membatch::Tokens> = tokens.iter().collect();
    assert_close(
        &model.embed_tokens(&refs).unwrap(),
        &r.embeddings,
        &format!("{name}, from its tokens"),
    );
    let longest = tokens.iter().max_by_key(|t| t.len()).unwrap();
    let mut fewer = longest.ids().to_vec();
    fewer.remove(1);
    assert_ne!(
        model
            .embed_tokens(&[&membatch::Tokens::new(fewer)])
            .unwrap()[0],
        model.embed_tokens(&[longest]).unwrap()[0],
        "{name}: other tokens, another vector"
    );
    let one_by_one: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| model.embed(&[t]).unwrap().remove(0))
        .collect();
    assert_close(
        &one_by_one,
        &r.embeddings,
        &format!("{name}, one at a time"),
    );
    assert_close(
        &model.embed(&texts).unwrap(),
        &r.embeddings,
        &format!("{name}, one batch"),
    );
}

fn load(name: &str) -> BertEmbedder {
    BertEmbedder::load(ModelSource::dir(fixture(name))).unwrap()
}

#[test]
fn xlm_roberta_with_a_unigram_tokenizer_and_e5_style_prompts() {
    // Positions from pad_token_id + 1, one token type, a SentencePiece
    // Unigram tokenizer.json with Metaspace, "query: "/"passage: " prompts.
    let r: Reference = reference("tiny-xlm-roberta");
    let model = load("tiny-xlm-roberta");
    check_embeddings("tiny-xlm-roberta", &model, &r);
    assert!(!model.info().word_by_word);
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    let counts: Vec<usize> = r.query_input_ids.iter().map(Vec::len).collect();
    assert_eq!(prompted_token_counts(&model, "query", &texts), counts);
    let query = EmbedOptions::new().with_prompt_name("query");
    assert_close(
        &model.embed_with(&texts, &query).unwrap(),
        &r.query,
        "query prompt",
    );
    assert_close(
        &model.embed_with_prompt("passage", &texts).unwrap(),
        &r.passage,
        "passage prompt",
    );
}

#[test]
fn mpnet_with_relative_position_buckets() {
    // The long text (128 tokens after truncation) reaches distances beyond
    // the exact buckets (under 8) and the logarithmic ones' last bucket
    // (about 91 tokens apart and more).
    let r: Reference = reference("tiny-mpnet");
    let model = load("tiny-mpnet");
    assert!(r.input_ids.iter().any(|ids| ids.len() > 100));
    check_embeddings("tiny-mpnet", &model, &r);
}

#[test]
fn last_token_and_cls_pooling() {
    let r: Reference = reference("tiny-bert-lasttoken");
    let model = load("tiny-bert-lasttoken");
    assert_eq!(model.settings().pooling, Pooling::LastToken);
    check_embeddings("tiny-bert-lasttoken", &model, &r);
    let cls = BertEmbedder::builder()
        .source(ModelSource::dir(fixture("tiny-bert-lasttoken")))
        .pooling(Pooling::Cls)
        .build()
        .unwrap();
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    assert_close(&cls.embed(&texts).unwrap(), &r.cls, "CLS chosen");
}

#[derive(Deserialize)]
struct RerankReference {
    query: String,
    documents: Vec<String>,
    pairs_input_ids: Vec<Vec<u32>>,
    pairs_token_type_ids: Vec<Vec<u32>>,
    logits: Vec<f32>,
}

fn check_reranker(name: &str) {
    let r: RerankReference = reference(name);
    let reranker = BertReranker::load(ModelSource::dir(fixture(name))).unwrap();
    let docs: Vec<&str> = r.documents.iter().map(String::as_str).collect();
    let pairs = reranker.tokenize_pairs(&r.query, &docs).unwrap();
    for (i, pair) in pairs.iter().enumerate() {
        let types = pair.type_ids().map_or(vec![0; pair.len()], <[u32]>::to_vec);
        assert_eq!(
            pair.ids(),
            &r.pairs_input_ids[i][..],
            "{name}: pair {i} ids"
        );
        assert_eq!(types, r.pairs_token_type_ids[i], "{name}: pair {i} types");
    }
    let one_by_one: Vec<f32> = docs
        .iter()
        .map(|d| reranker.score(&r.query, &[d]).unwrap()[0])
        .collect();
    let batched = rerank_in_batches(
        &reranker,
        &r.query,
        &docs,
        MemoryBudget::new(MemoryConfig::default()),
        BatchConfig::default(),
    )
    .unwrap();
    // Through a service's worker, in its queue and budget, beside an
    // embedding model: the same scores as the batcher's.
    let service = membatch::EmbedService::builder(load("tiny-bert-lasttoken"))
        .reranker(std::sync::Arc::new(
            BertReranker::load(ModelSource::dir(fixture(name))).unwrap(),
        ))
        .spawn()
        .unwrap();
    let served = service.rerank(&r.query, &docs).unwrap();
    assert!(
        max_abs_diff(&served, &batched) <= 1e-6,
        "{name}: served {served:?}"
    );
    assert_eq!(service.metrics().reranks.texts, docs.len() as u64);
    service.shutdown(std::time::Duration::from_secs(5));
    for (what, got) in [("one at a time", &one_by_one), ("batched", &batched)] {
        let d = max_abs_diff(got, &r.logits);
        assert!(d <= TOL, "{name}, {what}: max abs diff {d}");
    }
    assert_eq!(reranker.score(&r.query, &[]).unwrap(), Vec::<f32>::new());
}

#[test]
fn bert_cross_encoder_scores_match_transformers() {
    // BertForSequenceClassification: segment ids, pooler, classifier.
    check_reranker("tiny-bert-reranker");
}

#[test]
fn xlm_roberta_cross_encoder_scores_match_transformers() {
    // XLMRobertaForSequenceClassification (bge-reranker's head).
    check_reranker("tiny-xlm-roberta-reranker");
}

#[test]
fn an_embedding_model_is_not_a_reranker() {
    let err = BertReranker::load(ModelSource::dir(fixture("tiny-mpnet"))).unwrap_err();
    assert!(matches!(&err, membatch::Error::ModelFile { .. }), "{err:?}");
    let err = BertReranker::load(ModelSource::dir(fixture("tiny-bert-lasttoken"))).unwrap_err();
    assert!(
        err.report().to_string().contains("classifier"),
        "{}",
        err.report()
    );
}

#[test]
fn distilbert_through_candle_transformers() {
    let r: Reference = reference("tiny-distilbert");
    let model = load("tiny-distilbert");
    check_embeddings("tiny-distilbert", &model, &r);
}

#[test]
fn modernbert_through_candle_transformers() {
    // Layer 0 global attention, layer 1 a 16-token sliding window, which the
    // long texts exceed; rotary positions; GeGLU; no biases.
    let r: Reference = reference("tiny-modernbert");
    let model = load("tiny-modernbert");
    check_embeddings("tiny-modernbert", &model, &r);
}

#[test]
fn int8_is_refused_for_candle_families() {
    let err = BertEmbedder::builder()
        .source(ModelSource::dir(fixture("tiny-distilbert")))
        .precision(membatch::Precision::Int8)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, membatch::Error::InvalidConfig { .. }),
        "{err:?}"
    );
}

/// A copy of a fixture with `config.json` changed by `edit`.
fn fixture_with_config(name: &str, edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(name), dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

#[test]
fn impossible_shapes_and_attention_patterns_are_errors_naming_config_json() {
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "tiny-distilbert",
            Box::new(|c| c["n_heads"] = 0.into()),
            "num_attention_heads",
        ),
        (
            "tiny-distilbert",
            Box::new(|c| c["n_heads"] = 5.into()),
            "num_attention_heads",
        ),
        (
            "tiny-mpnet",
            Box::new(|c| c["relative_attention_num_buckets"] = 1.into()),
            "relative_attention_num_buckets",
        ),
        (
            "tiny-xlm-roberta",
            Box::new(|c| c["max_position_embeddings"] = 3.into()),
            "max_position_embeddings",
        ),
        (
            "tiny-modernbert",
            Box::new(|c| {
                c["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
                c.as_object_mut()
                    .unwrap()
                    .remove("global_attn_every_n_layers");
            }),
            "layer_types",
        ),
    ];
    for (name, edit, setting) in cases {
        let dir = fixture_with_config(name, edit);
        let err = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap_err();
        let report = err.report().to_string();
        assert!(
            matches!(&err, membatch::Error::ModelFile { path, .. } if path.ends_with("config.json"))
                && report.contains(setting),
            "{name}, {setting}: {report}"
        );
    }
}
