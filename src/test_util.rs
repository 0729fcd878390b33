//! Helpers for the crate's unit tests.

/// A temporary directory holding `files` (path relative to it, content);
/// parent directories are created as needed.
pub(crate) fn write_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (path, body) in files {
        let p = root.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    root
}

/// An environment lookup over fixed `(name, value)` pairs.
pub(crate) fn lookup(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

/// `n` deterministic values in [−0.5, 0.5), different for each `seed`: test
/// matrices for the encoder's products.
#[cfg(feature = "candle")]
pub(crate) fn ramp(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 7919 % 997) as f32 / 997.0) - 0.5)
        .collect()
}
