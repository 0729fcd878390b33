//! Arbitrary texts (split at 0xFF bytes, decoded lossily) through
//! tokenisation, planning and `BatchEmbedder` on a tiny model: one vector
//! per text, in order, or a typed error; never a panic
//! (`membatch::fuzzing::texts`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use membatch::{BatchEmbedder, BertEmbedder};

struct Fixture {
    _dir: tempfile::TempDir,
    batcher: BatchEmbedder<BertEmbedder>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = membatch_testkit::tiny::tiny_model_dir(&membatch_testkit::tiny::Tiny::default());
        let batcher = membatch::fuzzing::texts_batcher(dir.path());
        Fixture { _dir: dir, batcher }
    })
}

fuzz_target!(|data: &[u8]| membatch::fuzzing::texts(&fixture().batcher, data));
