//! Helpers shared by the integration tests: the golden reference data, the
//! real model (which must be present), and tiny random models built on the fly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use membatch::{BertEmbedder, Embedder, ModelSource, Tokens};
pub use membatch_testkit::tiny::*;
use serde::Deserialize;

/// sentence-transformers' output for all-MiniLM-L6-v2 on 40 edge-case texts.
#[derive(Deserialize)]
pub struct Golden {
    pub texts: Vec<String>,
    pub token_counts: Vec<usize>,
    pub input_ids: Vec<Vec<u32>>,
    pub embeddings: Vec<Vec<f32>>,
    pub unnormalized_mean_pooled: Vec<GoldenRow>,
    pub model_safetensors_sha256: String,
}

#[derive(Deserialize)]
pub struct GoldenRow {
    pub index: usize,
    pub text: String,
    pub embedding: Vec<f32>,
}

pub fn golden() -> Golden {
    golden_file("all-MiniLM-L6-v2.json")
}

/// A reference file of `tests/data`.
pub fn golden_file<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("read golden file"))
        .expect("parse golden file")
}

/// Where `scripts/fetch-model.sh NAME` places a model:
/// `sentence-transformers--NAME`, or `pypi--NAME` for the PyPI-only ones.
pub fn fetched_model_dir(name: &str) -> PathBuf {
    let owner = match name {
        "rohan-pristine" | "sre-embedding-model" => "pypi",
        _ => "sentence-transformers",
    };
    membatch::default_model_dir()
        .parent()
        .expect("the default model directory has a parent")
        .join(format!("{owner}--{name}"))
}

/// A model as `scripts/fetch-model.sh NAME` placed it.
/// Panics, never skips, when it is missing.
pub fn fetched_model(name: &str, builder: membatch::BertEmbedderBuilder) -> BertEmbedder {
    let dir = fetched_model_dir(name);
    builder
        .source(ModelSource::dir(&dir))
        .build()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs {name} and could not load it from {}: {e}\n\
             Run scripts/fetch-model.sh {name} first (scripts/test.sh does).",
                dir.display()
            )
        })
}

/// The real all-MiniLM-L6-v2, resolved as the library does by default.
/// Panics, never skips, when the weights are missing.
pub fn real_model() -> BertEmbedder {
    real_model_with(BertEmbedder::builder())
}

pub fn real_model_with(builder: membatch::BertEmbedderBuilder) -> BertEmbedder {
    let source = ModelSource::default_model();
    builder.source(source.clone()).build().unwrap_or_else(|e| {
        panic!(
            "the real model weights are required for this test and could not be loaded from \
             {source}: {e}\nRun scripts/fetch-model.sh first (scripts/test.sh does)."
        )
    })
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts each vector is within 1e-4 (max abs difference) of its reference.
pub fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of vectors");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let d = max_abs_diff(a, b);
        assert!(d <= 1e-4, "{what}, text {i}: max abs diff {d}");
    }
}

/// Copies the directory tree `from` into the existing directory `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// An example binary, which `cargo test` builds next to the test binaries.
pub fn example_bin(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = deps.parent().unwrap().join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} not built: run the tests with `cargo test`",
        bin.display()
    );
    bin
}

pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Loads a tiny model directory with default settings.
pub fn tiny(opts: &Tiny) -> (tempfile::TempDir, BertEmbedder) {
    let dir = tiny_model_dir(opts);
    let e = BertEmbedder::load(ModelSource::dir(dir.path())).expect("load tiny model");
    (dir, e)
}

/// The number of tokens each text becomes (special tokens included, after
/// truncation), by `embedder`'s `tokenize`.
pub fn token_counts<E: Embedder + ?Sized>(embedder: &E, texts: &[&str]) -> Vec<usize> {
    let tokens = embedder.tokenize(texts).expect("tokenize");
    tokens.iter().map(Tokens::len).collect()
}

/// The number of tokens each text becomes behind the model's prompt
/// `prompt`, prompt tokens included.
pub fn prompted_token_counts<E: Embedder + ?Sized>(
    embedder: &E,
    prompt: &str,
    texts: &[&str],
) -> Vec<usize> {
    let tokens = embedder
        .tokenize_prompted(texts, Some(prompt))
        .expect("tokenize");
    tokens.iter().map(Tokens::len).collect()
}

/// The token ids each text becomes, by `embedder`'s `tokenize`.
pub fn token_ids<E: Embedder + ?Sized>(embedder: &E, texts: &[&str]) -> Vec<Vec<u32>> {
    let tokens = embedder.tokenize(texts).expect("tokenize");
    tokens.iter().map(|t| t.ids().to_vec()).collect()
}
