//! Model sources: local directories and the Hugging Face hub's cache, offline.
// Loads through the BERT backend and the hub cache: built only with both features.
#![cfg(all(feature = "candle", feature = "hub"))]

use std::path::Path;

use crate::common::{max_abs_diff, write_tiny_model, Tiny};
use membatch::{BertEmbedder, Embedder, Error, HubModel, ModelSource};

/// Lays out `repo` in `cache` the way hf-hub stores a download: the files
/// under `snapshots/<commit>/` and `refs/main` naming that commit.
fn fake_hub_cache(cache: &Path, repo: &str) {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    write_tiny_model(&root.join("snapshots").join(commit), &Tiny::default());
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), commit).unwrap();
}

#[test]
fn a_hub_model_loads_offline_from_the_hf_hub_cache() {
    let cache = tempfile::tempdir().unwrap();
    fake_hub_cache(cache.path(), "acme/tiny-bert");
    let source = ModelSource::Hub(
        HubModel::new("acme/tiny-bert")
            .cache_dir(cache.path())
            .offline(true),
    );
    let from_hub = BertEmbedder::load(source).unwrap();

    let snapshot = std::fs::read_dir(cache.path().join("models--acme--tiny-bert/snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let from_dir = BertEmbedder::load(ModelSource::dir(snapshot)).unwrap();
    let text = ["hello world"];
    let d = max_abs_diff(
        &from_hub.embed(&text).unwrap()[0],
        &from_dir.embed(&text).unwrap()[0],
    );
    assert!(d == 0.0, "same files, different output ({d})");
}

#[test]
fn offline_and_not_cached_is_a_hub_error_that_says_so() {
    let cache = tempfile::tempdir().unwrap();
    let source = ModelSource::Hub(
        HubModel::new("acme/absent")
            .cache_dir(cache.path())
            .offline(true),
    );
    match BertEmbedder::load(source) {
        Err(Error::Hub { repo, file, reason }) => {
            assert_eq!(repo, "acme/absent");
            assert_eq!(file, "config.json");
            assert!(reason.contains("HF_HUB_OFFLINE"), "{reason}");
        }
        other => panic!("expected a hub error, got {other:?}"),
    }
}

#[test]
fn parse_tells_directories_from_repo_ids() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().to_str().unwrap();
    assert_eq!(ModelSource::parse(existing), ModelSource::dir(existing));
    assert_eq!(
        ModelSource::parse("BAAI/bge-small-en-v1.5"),
        ModelSource::hub("BAAI/bge-small-en-v1.5")
    );
    for path_like in ["./a/b", "../a", "/abs/path", "~/model", "a/b/c", "plain"] {
        assert_eq!(
            ModelSource::parse(path_like),
            ModelSource::dir(path_like),
            "{path_like}"
        );
    }
}
