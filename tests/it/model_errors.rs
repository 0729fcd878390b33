//! Every broken model directory is a typed error that names the file at fault.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use std::collections::HashMap;
use std::path::Path;

use crate::common::{tiny_model_dir, write, Tiny};
use membatch::{BertEmbedder, Error, ModelFileError, ModelSource, Precision};

fn load(dir: &Path) -> Error {
    BertEmbedder::load(ModelSource::dir(dir)).expect_err("loading should fail")
}

/// Asserts `err` is a `ModelFile` error for `file` and returns its kind.
fn file_error(err: Error, file: &str) -> ModelFileError {
    let msg = err.to_string();
    match err {
        Error::ModelFile { path, kind } => {
            assert!(
                path.ends_with(file),
                "error names {path:?}, expected {file}"
            );
            assert!(msg.contains(file), "message does not name {file}: {msg}");
            kind
        }
        other => panic!("expected a ModelFile error for {file}, got {other:?}"),
    }
}

#[test]
fn a_missing_directory_says_how_to_get_the_model() {
    let err = load(Path::new("/nonexistent/membatch-model"));
    let msg = err.report().to_string();
    let kind = file_error(err, "membatch-model");
    assert!(matches!(kind, ModelFileError::Missing { .. }));
    // The library names its own ways to a model (the repository's fetch
    // script is the example binaries' hint, tested in tests/it/embed_cli.rs).
    assert!(msg.contains("MEMBATCH_MODEL"), "{msg}");
    assert!(!msg.contains("scripts/"), "{msg}");
    // Another model's missing directory is not told where the default
    // model goes.
    assert!(msg.contains("no such directory"), "{msg}");
    let default = membatch::default_model_dir().display().to_string();
    assert!(!msg.contains(&default), "{msg}");
}

#[test]
fn each_missing_required_file_is_named() {
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let dir = tiny_model_dir(&Tiny::default());
        std::fs::remove_file(dir.path().join(file)).unwrap();
        let kind = file_error(load(dir.path()), file);
        assert!(
            matches!(kind, ModelFileError::Missing { .. }),
            "{file}: {kind:?}"
        );
    }
}

#[test]
fn pytorch_only_weights_get_a_conversion_hint() {
    let dir = tiny_model_dir(&Tiny::default());
    std::fs::rename(
        dir.path().join("model.safetensors"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let err = load(dir.path());
    assert!(err.report().to_string().contains("safetensors"), "{err}");
    file_error(err, "model.safetensors");
}

#[test]
fn unreadable_json_is_named() {
    for file in [
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
    ] {
        let dir = tiny_model_dir(&Tiny::default());
        write(dir.path(), file, "{ not json");
        let kind = file_error(load(dir.path()), file);
        assert!(matches!(kind, ModelFileError::Json(_)), "{file}: {kind:?}");
    }
}

#[test]
fn a_config_missing_a_field_is_a_json_error() {
    let dir = tiny_model_dir(&Tiny::default());
    write(
        dir.path(),
        "config.json",
        r#"{"model_type": "bert", "vocab_size": 33}"#,
    );
    let kind = file_error(load(dir.path()), "config.json");
    assert!(matches!(kind, ModelFileError::Json(_)), "{kind:?}");
}

#[test]
fn an_unsupported_architecture_is_named() {
    let dir = tiny_model_dir(&Tiny::default());
    write(
        dir.path(),
        "config.json",
        r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}"#,
    );
    let kind = file_error(load(dir.path()), "config.json");
    assert!(
        matches!(&kind, ModelFileError::UnsupportedArchitecture { found } if found == "gpt2"),
        "{kind:?}"
    );
}

/// A tiny model whose `config.json` has `field` set to `value`.
fn tiny_with_config(field: &str, value: serde_json::Value) -> tempfile::TempDir {
    let dir = tiny_model_dir(&Tiny::default());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[field] = value;
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

#[test]
fn an_unsupported_activation_or_position_embedding_is_named() {
    for (field, value) in [
        ("hidden_act", "swish"),
        ("position_embedding_type", "relative_key"),
    ] {
        let dir = tiny_with_config(field, value.into());
        let kind = file_error(load(dir.path()), "config.json");
        assert!(
            matches!(&kind, ModelFileError::UnsupportedSetting { name, found, .. }
                if name == field && found == value),
            "{kind:?}"
        );
        assert!(kind.to_string().contains("supported:"), "{kind}");
    }
}

#[test]
fn a_layer_norm_eps_that_is_not_positive_is_named() {
    for value in [0.0, -1e-12] {
        let dir = tiny_with_config("layer_norm_eps", value.into());
        let kind = file_error(load(dir.path()), "config.json");
        assert!(
            matches!(&kind, ModelFileError::InvalidSetting { name, .. } if name == "layer_norm_eps"),
            "{value}: {kind:?}"
        );
    }
}

#[test]
fn impossible_sizes_are_errors_not_panics() {
    for (field, value) in [
        ("hidden_size", 0),
        ("num_attention_heads", 0),
        ("num_attention_heads", 5),
        ("intermediate_size", 0),
    ] {
        let dir = tiny_with_config(field, value.into());
        for precision in [Precision::F32, Precision::Int8] {
            let err = BertEmbedder::builder()
                .source(ModelSource::dir(dir.path()))
                .precision(precision)
                .build()
                .unwrap_err();
            assert!(
                matches!(err, Error::ModelFile { .. }),
                "{field} = {value}: {err}"
            );
        }
    }
}

#[test]
fn an_unsupported_pooling_is_named() {
    let dir = tiny_model_dir(&Tiny {
        pooling: r#"{"pooling_mode_mean_sqrt_len_tokens": true}"#.into(),
        ..Tiny::default()
    });
    let kind = file_error(load(dir.path()), "1_Pooling/config.json");
    assert!(
        matches!(kind, ModelFileError::UnsupportedPooling { .. }),
        "{kind:?}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tiny_model_dir(&Tiny::default());
    let path = dir.path().join("model.safetensors");
    let mut tensors: HashMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    assert!(tensors
        .remove("encoder.layer.1.output.dense.weight")
        .is_some());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let err = load(dir.path());
    let msg = err.report().to_string();
    let kind = file_error(err, "model.safetensors");
    assert!(matches!(kind, ModelFileError::Weights(_)), "{kind:?}");
    assert!(msg.contains("encoder.layer.1.output.dense.weight"), "{msg}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    let dir = tiny_model_dir(&Tiny::default());
    // Weights were made for intermediate_size 64; claim 48.
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    write(
        dir.path(),
        "config.json",
        &config.replace(r#""intermediate_size":64"#, r#""intermediate_size":48"#),
    );
    let err = load(dir.path());
    let msg = err.report().to_string();
    let kind = file_error(err, "model.safetensors");
    assert!(matches!(kind, ModelFileError::Weights(_)), "{kind:?}");
    assert!(msg.contains("shape"), "{msg}");
}

#[test]
fn corrupt_weights_and_tokenizer_are_named() {
    let dir = tiny_model_dir(&Tiny::default());
    write(
        dir.path(),
        "model.safetensors",
        "\u{7}garbage that is not safetensors",
    );
    let kind = file_error(load(dir.path()), "model.safetensors");
    assert!(matches!(kind, ModelFileError::Weights(_)), "{kind:?}");

    let dir = tiny_model_dir(&Tiny::default());
    write(
        dir.path(),
        "tokenizer.json",
        r#"{"model": {"type": "Nope"}}"#,
    );
    let kind = file_error(load(dir.path()), "tokenizer.json");
    assert!(matches!(kind, ModelFileError::Tokenizer(_)), "{kind:?}");
}
