//! Arbitrary `config.json`, `modules.json`, `1_Pooling/config.json` and
//! `sentence_bert_config.json` (split at 0xFF bytes) over an otherwise
//! valid tiny model: it loads, or a typed error names the file; never a
//! panic (`membatch::fuzzing::model_files`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tempfile::TempDir;

/// The tiny model, and the directory each input is written into.
fn dirs() -> &'static (TempDir, TempDir) {
    static T: OnceLock<(TempDir, TempDir)> = OnceLock::new();
    T.get_or_init(|| {
        let model =
            membatch_testkit::tiny::tiny_model_dir(&membatch_testkit::tiny::Tiny::default());
        (model, tempfile::tempdir().unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let (model, scratch) = dirs();
    membatch::fuzzing::model_files(model.path(), scratch.path(), data);
});
