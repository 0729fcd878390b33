//! An index on disk: one generation directory per run holding
//! `chunks.jsonl` (a [`ChunkMeta`] per line), `embeddings.safetensors`
//! (the matrix, streamed row by row by [`IndexWriter`]) and `meta.json`
//! ([`Meta`]); `CURRENT` names the complete one, switched atomically.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use membatch_corpus::Chunk;
use serde::{Deserialize, Serialize};

use super::codec::to_le_bytes;
use membatch_bin::{fail, Failure};

/// `meta.json`: what an index was made from.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Meta {
    pub(super) model: String,
    /// The prompt chunks were embedded behind (none for an index written
    /// before prompts were recorded).
    #[serde(default)]
    pub(super) document_prompt: Option<String>,
    pub(super) dimension: usize,
    pub(super) root: PathBuf,
    pub(super) files: usize,
    pub(super) chunks: usize,
}

/// One chunk of one file, as stored in `chunks.jsonl`.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct ChunkMeta {
    pub(super) path: String,
    pub(super) start_byte: usize,
    pub(super) end_byte: usize,
    pub(super) start_line: usize,
    pub(super) end_line: usize,
    /// The chunk's first lines, for showing hits.
    pub(super) text: String,
}

/// Lines of each chunk kept in `chunks.jsonl` for showing hits.
const PREVIEW_LINES: usize = 4;

impl ChunkMeta {
    pub(super) fn new(path: &str, chunk: &Chunk<'_>) -> Self {
        ChunkMeta {
            path: path.to_string(),
            start_byte: chunk.start_byte,
            end_byte: chunk.end_byte,
            start_line: chunk.start_line,
            end_line: chunk.end_line,
            text: chunk
                .text
                .lines()
                .take(PREVIEW_LINES)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Writes `chunks.jsonl` and the rows of the embedding matrix as they come;
/// `finish` wraps the rows into `embeddings.safetensors`.
pub(super) struct IndexWriter {
    dir: PathBuf,
    chunks: BufWriter<File>,
    rows_file: BufWriter<File>,
    dimension: usize,
    rows: usize,
}

impl IndexWriter {
    pub(super) fn create(dir: &Path, dimension: usize) -> std::io::Result<Self> {
        Ok(IndexWriter {
            dir: dir.to_path_buf(),
            chunks: BufWriter::new(File::create(dir.join("chunks.jsonl"))?),
            // Read back in `finish`, so opened for both.
            rows_file: BufWriter::new(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(dir.join("rows.f32"))?,
            ),
            dimension,
            rows: 0,
        })
    }

    /// The rows written so far.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    pub(super) fn push(&mut self, meta: &ChunkMeta, vector: &[f32]) -> Result<(), Failure> {
        if vector.len() != self.dimension {
            return Err(fail(format!(
                "a cached vector has {} dimensions, the model {}",
                vector.len(),
                self.dimension
            )));
        }
        serde_json::to_writer(&mut self.chunks, meta)?;
        self.chunks.write_all(b"\n")?;
        self.rows_file.write_all(&to_le_bytes(vector))?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the safetensors file by streaming the rows after its header
    /// ([`crate::matrix`]), then `meta.json`, and syncs everything to disk.
    pub(super) fn finish(mut self, meta: &Meta) -> Result<(), Failure> {
        self.chunks.flush()?;
        self.chunks.get_ref().sync_all()?;
        let mut rows = self
            .rows_file
            .into_inner()
            .map_err(|e| fail(e.to_string()))?;
        let bytes = (self.rows * self.dimension * 4) as u64;
        let header = crate::matrix::safetensors_header(
            "embeddings",
            self.rows as u64,
            self.dimension as u64,
            &[("model", meta.model.as_str())],
            0,
        );
        let path = self.dir.join("embeddings.safetensors");
        let mut out = BufWriter::new(File::create(&path)?);
        out.write_all(&header)?;
        rows.rewind()?;
        let copied = std::io::copy(&mut rows, &mut out)?;
        if copied != bytes {
            return Err(fail(format!(
                "wrote {copied} bytes of embeddings, expected {bytes}"
            )));
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        drop(rows);
        std::fs::remove_file(self.dir.join("rows.f32"))?;
        let mut m = File::create(self.dir.join("meta.json"))?;
        serde_json::to_writer_pretty(&mut m, meta)?;
        m.sync_all()?;
        Ok(())
    }
}

/// Renames the finished generation into place and points `CURRENT` at it
/// (write to a temporary file, then rename: atomic on POSIX), then removes
/// the generation it replaces.
pub(super) fn switch_current(out: &Path, tmp: &Path, generation: &str) -> Result<(), Failure> {
    let previous = read_current(out)?;
    std::fs::rename(tmp, out.join(generation))?;
    let pointer = out.join("CURRENT.tmp");
    let mut f = File::create(&pointer)?;
    f.write_all(generation.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&pointer, out.join("CURRENT"))?;
    if let Ok(dir) = File::open(out) {
        let _ = dir.sync_all();
    }
    if let Some(prev) = previous.filter(|p| p != generation) {
        let _ = std::fs::remove_dir_all(out.join(prev));
    }
    Ok(())
}

/// Whether `name` is a generation directory this program writes:
/// `gen-<pid>-<nanos>`, with `.tmp` while unfinished.
fn is_generation(name: &str) -> bool {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    let mut parts = name.split('-');
    parts.next() == Some("gen")
        && parts.clone().count() == 2
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The generation `CURRENT` names, `None` when there is no index yet.
pub(super) fn read_current(out: &Path) -> Result<Option<String>, Failure> {
    match std::fs::read_to_string(out.join("CURRENT")) {
        Ok(s) if is_generation(s.trim()) && !s.trim().ends_with(".tmp") => {
            Ok(Some(s.trim().to_string()))
        }
        Ok(s) => Err(fail(format!(
            "{}: names {:?}, not an index generation; remove the file to start afresh",
            out.join("CURRENT").display(),
            s.trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(format!("{}: {e}", out.join("CURRENT").display()))),
    }
}

/// Removes what an interrupted run left behind: unfinished generations and
/// complete ones that `CURRENT` no longer names. Only called with the
/// cache's lock held, so no other run is writing a generation.
pub(super) fn remove_stale_generations(out: &Path) -> Result<(), Failure> {
    let current = read_current(out)?;
    for entry in std::fs::read_dir(out)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_generation(&name) && Some(&name) != current.as_ref() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}
