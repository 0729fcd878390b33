//! Which files a corpus holds: a `.gitignore`-aware walk, and the reasons a
//! file is skipped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A file that is left out, and why.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file's path relative to the walked root, `/`-separated.
    pub path: String,
    /// Why it is left out.
    pub reason: String,
}

/// What a [`walk`] leaves out beyond the ignore rules.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// A directory never walked into (e.g. an index written under the root).
    pub exclude: Option<PathBuf>,
    /// Only files whose path relative to the root matches this glob
    /// (gitignore syntax: `*.rs`, `src/**/*.py`, `!*.lock`).
    pub glob: Option<String>,
}

/// Files under `root`, sorted by path, honouring `.gitignore` (also outside
/// a git checkout) and skipping hidden files and directories (`.git/`,
/// `.github/`, dotfiles); walk errors (a symlink loop, an unreadable
/// directory) become skipped entries.
///
/// # Errors
///
/// The glob's own error when it is not a valid pattern.
pub fn walk(root: &Path, options: &WalkOptions) -> Result<(Vec<PathBuf>, Vec<Skipped>), String> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut builder = ignore::WalkBuilder::new(root);
    builder
        .follow_links(true)
        .require_git(false)
        .sort_by_file_path(|a, b| a.cmp(b));
    // The glob filters the files the walk yields. (As the walk's own
    // overrides it would whitelist files that .gitignore excludes.)
    let glob = match &options.glob {
        Some(glob) => Some(
            ignore::overrides::OverrideBuilder::new(root)
                .add(glob)
                .and_then(|b| b.build())
                .map_err(|e| format!("invalid glob {glob:?}: {e}"))?,
        ),
        None => None,
    };
    if let Some(exclude) = options.exclude.clone() {
        builder.filter_entry(move |e| e.path().canonicalize().map_or(true, |p| p != exclude));
    }
    for entry in builder.build() {
        match entry {
            Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => {
                if glob
                    .as_ref()
                    .is_none_or(|g| !g.matched(e.path(), false).is_ignore())
                {
                    files.push(e.into_path());
                }
            }
            Ok(_) => {}
            Err(err) => skipped.push(Skipped {
                path: error_path(&err).map_or_else(String::new, |p| relative(root, p)),
                reason: err.to_string(),
            }),
        }
    }
    Ok((files, skipped))
}

/// The path a walk error is about, looking through its wrappers.
fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::Loop { child, .. } => Some(child),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        _ => None,
    }
}

/// Why a file's text cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unreadable {
    /// Larger than the size limit.
    #[error("{} is larger than the {} limit", bytesize::ByteSize(*size), bytesize::ByteSize(*max))]
    TooLarge {
        /// The file's size as far as it was read (just past the limit
        /// when its metadata did not tell).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Contains NUL bytes in its first 8 KiB.
    #[error("binary (contains NUL bytes)")]
    Binary,
    /// Not valid UTF-8 from this byte on.
    #[error("not valid UTF-8 (at byte {at})")]
    NotUtf8 {
        /// The first invalid byte.
        at: usize,
    },
    /// The file system's error.
    #[error("cannot read: {0}")]
    Io(#[source] std::io::Error),
}

/// The file's text, or why it is left out: more than `max_size` bytes,
/// binary, not UTF-8, or unreadable.
///
/// # Errors
///
/// The reason, as [`Unreadable`].
pub fn read_text(path: &Path, max_size: u64) -> Result<String, Unreadable> {
    let file = File::open(path).map_err(Unreadable::Io)?;
    let len = file.metadata().map_err(Unreadable::Io)?.len();
    if len > max_size {
        return Err(Unreadable::TooLarge {
            size: len,
            max: max_size,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` bounds files whose size the metadata does not tell (/proc).
    file.take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable::Io)?;
    if bytes.len() as u64 > max_size {
        return Err(Unreadable::TooLarge {
            size: bytes.len() as u64,
            max: max_size,
        });
    }
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err(Unreadable::Binary);
    }
    String::from_utf8(bytes).map_err(|e| Unreadable::NotUtf8 {
        at: e.utf8_error().valid_up_to(),
    })
}

/// `path` relative to `root`, `/`-separated on every platform.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_keeps_matching_files_and_the_ignore_rules_still_apply() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::write(root.join("src/a.rs"), "fn a() {}").unwrap();
        std::fs::write(root.join("src/deep/b.rs"), "fn b() {}").unwrap();
        std::fs::write(root.join("src/c.py"), "c = 1").unwrap();
        std::fs::write(root.join("src/gone.rs"), "fn gone() {}").unwrap();
        std::fs::write(root.join("src/deep/gone.rs"), "fn gone() {}").unwrap();
        std::fs::write(root.join(".gitignore"), "gone.rs\n").unwrap();
        let rel = |options: &WalkOptions| {
            walk(root, options)
                .unwrap()
                .0
                .iter()
                .map(|p| relative(root, p))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rel(&WalkOptions::default()),
            ["src/a.rs", "src/c.py", "src/deep/b.rs"]
        );
        let rust = WalkOptions {
            glob: Some("*.rs".into()),
            ..WalkOptions::default()
        };
        assert_eq!(rel(&rust), ["src/a.rs", "src/deep/b.rs"]);
        let bad = WalkOptions {
            glob: Some("[".into()),
            ..WalkOptions::default()
        };
        assert!(walk(root, &bad).unwrap_err().contains("invalid glob"));
    }

    #[test]
    fn unreadable_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(100)).unwrap();
        assert!(matches!(
            read_text(&big, 10),
            Err(Unreadable::TooLarge { size: 100, max: 10 })
        ));
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"ab\0cd").unwrap();
        assert!(matches!(read_text(&bin, 10), Err(Unreadable::Binary)));
        let latin = dir.path().join("latin");
        std::fs::write(&latin, b"caf\xe9").unwrap();
        assert!(matches!(
            read_text(&latin, 10),
            Err(Unreadable::NotUtf8 { at: 3 })
        ));
        assert!(matches!(
            read_text(&dir.path().join("none"), 10),
            Err(Unreadable::Io(_))
        ));
        assert_eq!(read_text(&big, 100).unwrap().len(), 100);
    }
}
