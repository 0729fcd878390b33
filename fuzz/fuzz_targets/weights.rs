//! A hostile `model.safetensors`: arbitrary bytes, or a valid tiny model's
//! file with the input XORed over its start (header and first tensors).
//! Loading gives a typed error or a model, never a panic, and never a
//! huge allocation (libFuzzer's -malloc_limit_mb catches one).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use membatch::{BertEmbedder, ModelSource};

fn template() -> &'static (tempfile::TempDir, Vec<u8>) {
    static T: OnceLock<(tempfile::TempDir, Vec<u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = membatch_testkit::tiny::tiny_model_dir(&membatch_testkit::tiny::Tiny::default());
        let weights = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        (dir, weights)
    })
}

fuzz_target!(|data: &[u8]| {
    let (model, weights) = template();
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        data.to_vec()
    } else {
        let mut w = weights.clone();
        for (b, x) in w.iter_mut().zip(data) {
            *b ^= x;
        }
        w
    };
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(model.path().join(name), dir.path().join(name)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("1_Pooling")).unwrap();
    std::fs::copy(
        model.path().join("1_Pooling/config.json"),
        dir.path().join("1_Pooling/config.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    if let Err(e) = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .threads(1)
        .build()
    {
        let _ = e.report().to_string();
    }
});
