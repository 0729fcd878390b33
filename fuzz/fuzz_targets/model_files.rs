//! Arbitrary `config.json`, `modules.json`, `1_Pooling/config.json` and
//! `sentence_bert_config.json` (split at 0xFF bytes) over an otherwise
//! valid tiny model: it loads, or a typed error names the file; never a
//! panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use membatch::{BertEmbedder, Embedder, ModelSource};

fn template() -> &'static tempfile::TempDir {
    static T: OnceLock<tempfile::TempDir> = OnceLock::new();
    T.get_or_init(|| {
        membatch_testkit::tiny::tiny_model_dir(&membatch_testkit::tiny::Tiny::default())
    })
}

const FILES: [&str; 4] = [
    "config.json",
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
];

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    for name in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(template().path().join(name), dir.path().join(name)).unwrap();
    }
    let mut parts = data.split(|b| *b == 0xFF);
    for name in FILES {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match parts.next() {
            Some(bytes) => std::fs::write(&path, bytes).unwrap(),
            None => {
                std::fs::copy(template().path().join(name), &path).unwrap();
            }
        }
    }
    match BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .threads(1)
        .build()
    {
        Ok(model) => {
            let v = model.embed(&["the quick brown fox"]);
            assert!(v.is_ok() || v.is_err());
        }
        Err(e) => {
            let _ = e.report().to_string();
        }
    }
});
