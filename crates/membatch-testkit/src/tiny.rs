//! Tiny random BERT model directories in the sentence-transformers layout,
//! written on the fly: what membatch's unit and integration tests (and its
//! applications' tests) run when the real weights do not matter.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::bert::{BertModel, Config};

/// Options for a tiny random BERT model directory.
#[derive(Clone)]
pub struct Tiny {
    /// "mean", "cls" or "max" (the pooling config flag to set), or a raw
    /// pooling config JSON when it starts with '{'.
    pub pooling: String,
    /// Whether `modules.json` lists a `Normalize` module.
    pub normalize: bool,
    /// `max_seq_length` in `sentence_bert_config.json`.
    pub max_seq_length: usize,
    /// The model's position table (`config.json`).
    pub max_position_embeddings: usize,
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny {
            pooling: "mean".into(),
            normalize: true,
            max_seq_length: 24,
            max_position_embeddings: 64,
        }
    }
}

/// The tiny model's hidden size (and embedding dimension).
pub const TINY_HIDDEN: usize = 32;

/// The tiny model's vocabulary: specials, some words, word pieces, CJK.
pub const TINY_VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "quick", "brown", "fox",
    "a", "man", "is", "eating", "food", ".", ",", "!", "?", "##s", "##ing", "emb", "##ed", "##d",
    "東", "京", "日", "本", "lazy", "dog", "jump", "cafe",
];

/// candle-transformers' `Config` of the tiny model, for reference passes.
pub fn tiny_config(max_position_embeddings: usize) -> Config {
    serde_json::from_value(tiny_config_json(max_position_embeddings)).unwrap()
}

fn tiny_config_json(max_position_embeddings: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": TINY_VOCAB.len(),
        "hidden_size": TINY_HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_position_embeddings,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute"
    })
}

/// A BERT WordPiece tokenizer.json over [`TINY_VOCAB`]. Like the real
/// all-MiniLM-L6-v2 file it carries its own truncation (8) and fixed padding
/// (16), which the embedder must replace.
pub fn tiny_tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = TINY_VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i.into()))
        .collect();
    let added: Vec<serde_json::Value> = TINY_VOCAB[..5]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

/// Writes a complete tiny model directory (random weights) and returns it.
pub fn tiny_model_dir(opts: &Tiny) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), opts);
    dir
}

/// Writes a complete tiny model (random weights) into `dir`.
pub fn write_tiny_model(dir: &Path, opts: &Tiny) {
    std::fs::create_dir_all(dir).unwrap();
    let config = tiny_config(opts.max_position_embeddings);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    BertModel::load(vb, &config).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
    write(
        dir,
        "config.json",
        &tiny_config_json(opts.max_position_embeddings).to_string(),
    );
    write(dir, "tokenizer.json", &tiny_tokenizer_json());
    let mut modules = vec![
        serde_json::json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        serde_json::json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if opts.normalize {
        modules.push(serde_json::json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
    }
    write(
        dir,
        "modules.json",
        &serde_json::Value::from(modules).to_string(),
    );
    let pooling = if opts.pooling.starts_with('{') {
        opts.pooling.clone()
    } else {
        let flag = match opts.pooling.as_str() {
            "mean" => "pooling_mode_mean_tokens",
            "cls" => "pooling_mode_cls_token",
            "max" => "pooling_mode_max_tokens",
            other => panic!("unknown pooling {other}"),
        };
        format!(r#"{{"word_embedding_dimension": {TINY_HIDDEN}, "{flag}": true}}"#)
    };
    write(dir, "1_Pooling/config.json", &pooling);
    write(
        dir,
        "sentence_bert_config.json",
        &format!(
            r#"{{"max_seq_length": {}, "do_lower_case": false}}"#,
            opts.max_seq_length
        ),
    );
}

/// Writes `body` to `dir/name`, creating parent directories.
pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}
