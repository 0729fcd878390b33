//! Arbitrary texts (split at 0xFF bytes, decoded lossily) through
//! tokenisation, planning and `BatchEmbedder` on a tiny model: one vector
//! per text, in order, or a typed error; never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use membatch::{BatchEmbedder, BertEmbedder, Config, Embedder, ModelSource};

struct Fixture {
    _dir: tempfile::TempDir,
    batcher: BatchEmbedder<BertEmbedder>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = membatch_testkit::tiny::tiny_model_dir(&membatch_testkit::tiny::Tiny::default());
        let model = BertEmbedder::builder()
            .source(ModelSource::dir(dir.path()))
            .threads(1)
            .build()
            .expect("the tiny model loads");
        let batcher = BatchEmbedder::with_config(model, &Config::default()).unwrap();
        Fixture { _dir: dir, batcher }
    })
}

fuzz_target!(|data: &[u8]| {
    let texts: Vec<String> = data
        .split(|b| *b == 0xFF)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let f = fixture();
    match f.batcher.embed(&texts) {
        Ok(vectors) => {
            assert_eq!(vectors.len(), texts.len());
            let dim = f.batcher.embedder().dimension();
            assert!(vectors
                .iter()
                .all(|v| v.len() == dim && v.iter().all(|x| x.is_finite())));
        }
        Err(e) => {
            // Typed, and printable on one line.
            let _ = e.report().to_string();
        }
    }
});
