//! The bodies of the fuzz targets in `fuzz/`, one function each, compiled
//! for `cargo fuzz` (`--cfg fuzzing`) and for this crate's own tests, which
//! run every body over its committed seeds and thousands of mutated inputs
//! in each `cargo test` (`membatch_testkit::fuzz`). `scripts/fuzz.sh` runs
//! the same functions under libFuzzer with the address sanitizer for the
//! deep runs. Not part of membatch's interface.
//!
//! Every body holds one promise for any bytes: a value or a typed error,
//! never a panic.

/// Arbitrary contents for the files memory readings come from
/// (`/proc/self/cgroup`, `mountinfo`, `memory.stat`, a limit file,
/// `/proc/self/status`, `/proc/meminfo`), split at 0xFF bytes: every parser
/// answers (with "unknown" at worst).
pub fn memory_files(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xFF).map(String::from_utf8_lossy);
    let mut next = || parts.next().unwrap_or_default().into_owned();
    let (proc_cgroup, mountinfo, stat, limit, status) = (next(), next(), next(), next(), next());
    crate::memory::parse_any(&proc_cgroup, &mountinfo, &stat, &limit, &status);
}

/// Arbitrary `NAME=value` lines as the environment for [`Config`], and
/// arbitrary values for every settings parser: a value or a typed error,
/// and what `Config` accepted holds its invariants.
///
/// [`Config`]: crate::config::Config
pub fn settings(data: &[u8]) {
    use crate::config::Config;
    use crate::memory::{parse_size, MemoryLimit};
    use crate::precision::Precision;

    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Ok(c) = Config::from_lookup(lookup) {
        assert!(c.batch().min_batch_size() >= 1);
        assert!(c.batch().min_batch_size() <= c.batch().max_batch_size());
        if let Some(p) = c.memory().max_percent() {
            assert!(p > 0.0 && p <= 100.0);
        }
        assert!(c.memory().budget_bytes(1 << 30) <= 1 << 30);
    }
    let _ = MemoryLimit::parse("x", &text);
    let _ = parse_size("x", &text);
    let _ = text.parse::<Precision>();
}

/// The backend's targets: they run a tiny model that the caller builds
/// (`membatch_testkit::tiny`), since the library cannot depend on the test
/// kit.
#[cfg(feature = "candle")]
mod backend {
    use std::path::Path;

    use crate::batch::BatchEmbedder;
    use crate::bert::BertEmbedder;
    use crate::embedder::Embedder;
    use crate::source::ModelSource;

    /// The batcher [`texts`] runs: the tiny model in `dir` on one thread,
    /// with the default settings.
    pub fn texts_batcher(dir: &Path) -> BatchEmbedder<BertEmbedder> {
        let model = BertEmbedder::builder()
            .source(ModelSource::dir(dir))
            .threads(1)
            .build()
            .expect("the tiny model loads");
        BatchEmbedder::with_config(model, &crate::config::Config::default())
            .expect("the default settings are valid")
    }

    /// Arbitrary texts (split at 0xFF bytes, decoded lossily) through
    /// tokenisation, planning and `batcher`: one finite vector per text, in
    /// order, or a typed error printable on one line.
    pub fn texts(batcher: &BatchEmbedder<BertEmbedder>, data: &[u8]) {
        let texts: Vec<String> = data
            .split(|b| *b == 0xFF)
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        match batcher.embed(&texts) {
            Ok(vectors) => {
                assert_eq!(vectors.len(), texts.len());
                let dim = batcher.embedder().info().dimension;
                assert!(vectors
                    .iter()
                    .all(|v| v.len() == dim && v.iter().all(|x| x.is_finite())));
            }
            Err(e) => {
                let _ = e.report().to_string();
            }
        }
    }

    /// The configuration files a model directory may hold.
    const CONFIG_FILES: [&str; 4] = [
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
    ];

    /// Arbitrary `config.json`, `modules.json`, `1_Pooling/config.json` and
    /// `sentence_bert_config.json` (split at 0xFF bytes; a file the input
    /// does not reach is `template`'s) over `template`, a valid model
    /// directory, written into the directory `scratch` (every file
    /// rewritten): it loads and embeds, or a typed error names the file.
    pub fn model_files(template: &Path, scratch: &Path, data: &[u8]) {
        std::fs::create_dir_all(scratch.join("1_Pooling")).expect("create the pooling folder");
        for name in ["model.safetensors", "tokenizer.json"] {
            std::fs::copy(template.join(name), scratch.join(name)).expect("copy the template");
        }
        let mut parts = data.split(|b| *b == 0xFF);
        for name in CONFIG_FILES {
            let path = scratch.join(name);
            match parts.next() {
                Some(bytes) => std::fs::write(&path, bytes),
                None => std::fs::copy(template.join(name), &path).map(|_| ()),
            }
            .expect("write a model file");
        }
        match load(scratch) {
            Ok(model) => {
                if let Err(e) = model.embed(&["the quick brown fox"]) {
                    let _ = e.report().to_string();
                }
            }
            Err(e) => {
                let _ = e.report().to_string();
            }
        }
    }

    /// A hostile `model.safetensors` beside `template`'s other files: for an
    /// even first byte the rest of the input is the file, for an odd one it
    /// is XORed over the start of `weights` (the template's valid file:
    /// header and first tensors), written into the directory `scratch`.
    /// Loading gives a model or a typed error.
    pub fn weights(template: &Path, weights: &[u8], scratch: &Path, data: &[u8]) {
        let Some((&mode, data)) = data.split_first() else {
            return;
        };
        let bytes = if mode % 2 == 0 {
            data.to_vec()
        } else {
            let mut w = weights.to_vec();
            for (b, x) in w.iter_mut().zip(data) {
                *b ^= x;
            }
            w
        };
        std::fs::create_dir_all(scratch.join("1_Pooling")).expect("create the pooling folder");
        for name in CONFIG_FILES.iter().chain(&["tokenizer.json"]) {
            std::fs::copy(template.join(name), scratch.join(name)).expect("copy the template");
        }
        std::fs::write(scratch.join("model.safetensors"), bytes).expect("write the weights");
        if let Err(e) = load(scratch) {
            let _ = e.report().to_string();
        }
    }

    fn load(dir: &Path) -> crate::error::Result<BertEmbedder> {
        BertEmbedder::builder()
            .source(ModelSource::dir(dir))
            .threads(1)
            .build()
    }
}

#[cfg(feature = "candle")]
pub use backend::{model_files, texts, texts_batcher, weights};

#[cfg(test)]
mod tests {
    //! Each body over its seeds and generated inputs (the deep runs are
    //! libFuzzer's: `scripts/fuzz.sh`).
    use membatch_testkit::fuzz::run;

    #[test]
    fn memory_files_never_panic() {
        run("memory_files", 5_000, super::memory_files);
    }

    #[test]
    fn settings_are_a_value_or_a_typed_error() {
        run("settings", 5_000, super::settings);
    }

    #[cfg(feature = "candle")]
    mod backend {
        use membatch_testkit::fuzz::run;
        use membatch_testkit::tiny::{tiny_model_dir, Tiny};

        #[test]
        fn texts_embed_or_fail_typed() {
            let dir = tiny_model_dir(&Tiny::default());
            let batcher = super::super::texts_batcher(dir.path());
            run("texts", 2_000, |data| super::super::texts(&batcher, data));
        }

        #[test]
        fn model_files_load_or_name_the_file() {
            let dir = tiny_model_dir(&Tiny::default());
            let scratch = tempfile::tempdir().unwrap();
            run("model_files", 1_000, |data| {
                super::super::model_files(dir.path(), scratch.path(), data)
            });
        }

        #[test]
        fn weights_load_or_fail_typed() {
            let dir = tiny_model_dir(&Tiny::default());
            let weights = std::fs::read(dir.path().join("model.safetensors")).unwrap();
            let scratch = tempfile::tempdir().unwrap();
            run("weights", 1_000, |data| {
                super::super::weights(dir.path(), &weights, scratch.path(), data)
            });
        }
    }
}
