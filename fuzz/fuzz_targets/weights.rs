//! A hostile `model.safetensors`: arbitrary bytes, or a valid tiny model's
//! file with the input XORed over its start (header and first tensors).
//! Loading gives a typed error or a model, never a panic, and never a
//! huge allocation (libFuzzer's -malloc_limit_mb catches one)
//! (`membatch::fuzzing::weights`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tempfile::TempDir;

/// The tiny model, its weights file, and the directory each input is
/// written into.
fn fixture() -> &'static (TempDir, Vec<u8>, TempDir) {
    static T: OnceLock<(TempDir, Vec<u8>, TempDir)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = membatch_testkit::tiny::tiny_model_dir(&membatch_testkit::tiny::Tiny::default());
        let weights = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        (dir, weights, tempfile::tempdir().unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let (model, weights, scratch) = fixture();
    membatch::fuzzing::weights(model.path(), weights, scratch.path(), data);
});
