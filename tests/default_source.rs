//! How the default model is found. One test function, because it changes
//! process-wide environment variables.

use membatch::{default_model_dir, ModelSource, DEFAULT_MODEL};

#[test]
fn default_resolution_order() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("MEMBATCH_HOME", home.path());
    std::env::remove_var("MEMBATCH_MODEL");
    let local = default_model_dir();
    assert!(local.starts_with(home.path()));
    assert!(local.ends_with("models/sentence-transformers--all-MiniLM-L6-v2"));

    // Nothing placed: the hub repo.
    assert_eq!(
        ModelSource::default_model(),
        ModelSource::hub(DEFAULT_MODEL)
    );

    // The fetched copy, once it is there.
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("config.json"), "{}").unwrap();
    assert_eq!(ModelSource::default_model(), ModelSource::dir(&local));

    // MEMBATCH_MODEL beats both: the environment's settings name it, and
    // the default is only what a model-less configuration falls back to.
    let configured = || {
        membatch::Config::from_env()
            .unwrap()
            .model()
            .source
            .clone()
            .unwrap_or_else(ModelSource::default_model)
    };
    assert_eq!(configured(), ModelSource::dir(&local));
    std::env::set_var("MEMBATCH_MODEL", "acme/other-model");
    assert_eq!(configured(), ModelSource::hub("acme/other-model"));
    std::env::set_var("MEMBATCH_MODEL", home.path());
    assert_eq!(configured(), ModelSource::dir(home.path()));
    assert_eq!(ModelSource::default_model(), ModelSource::dir(&local));
}
