//! Which files an index covers: a `.gitignore`-aware walk, and the
//! reasons a file is skipped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A file that is not indexed, and why.
#[derive(Serialize, Debug)]
pub(super) struct Skipped {
    pub(super) path: String,
    pub(super) reason: String,
}

/// Files under `root`, sorted, honouring `.gitignore` and skipping hidden
/// files and directories (`.git/`, `.github/`, dotfiles) and the index
/// directory itself; walk errors (a symlink loop, an unreadable directory)
/// become skipped entries.
pub(super) fn walk(root: &Path, out: &Path) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let out = out.to_path_buf();
    let walker = ignore::WalkBuilder::new(root)
        .follow_links(true)
        // Honour .gitignore files even outside a git checkout.
        .require_git(false)
        .sort_by_file_path(|a, b| a.cmp(b))
        .filter_entry(move |e| e.path().canonicalize().map_or(true, |p| p != out))
        .build();
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => files.push(e.into_path()),
            Ok(_) => {}
            Err(err) => skipped.push(Skipped {
                path: error_path(&err).map_or_else(String::new, |p| relative(root, p)),
                reason: err.to_string(),
            }),
        }
    }
    (files, skipped)
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

/// The file's text, or why it is skipped.
pub(super) fn read_text(path: &Path, max_size: u64) -> Result<String, String> {
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if len > max_size {
        return Err(format!(
            "{} is larger than --max-file-size ({})",
            bytesize::ByteSize(len),
            bytesize::ByteSize(max_size)
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` bounds files whose size the metadata does not tell (/proc).
    file.take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_size {
        return Err(format!(
            "larger than --max-file-size ({})",
            bytesize::ByteSize(max_size)
        ));
    }
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err("binary (contains NUL bytes)".into());
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
}

pub(super) fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
