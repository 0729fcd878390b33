//! Writing an index: one generation directory per run, streamed window by
//! window, made current atomically once complete.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use membatch::memory::{MemoryLimit, MemoryProbe, SystemProbe};
use membatch::{BatchEmbedder, BertEmbedder, Embedder};
use serde::{Deserialize, Serialize};

use super::cache::{self, to_le_bytes};
use super::{memory_limit, model_config, model_id, size, Args, WINDOW};
use crate::support::{fail, positive, Failure};
use membatch_cli::corpus::{
    read_text, relative, walk, Chunk, Chunker, Skipped, Unreadable, WalkOptions,
};

/// `membatch codebase index`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct IndexArgs {
    /// The tree to index.
    dir: PathBuf,
    /// Where the index and its cache live.
    #[arg(long)]
    out: PathBuf,
    /// Memory budget: a size (512MiB) or a percentage of the container's
    /// or machine's memory [default: $EMBEDDING_MAX_MEMORY, else 70%]
    #[arg(long, value_parser = memory_limit)]
    memory_budget: Option<MemoryLimit>,
    /// Skip files larger than this.
    #[arg(long, default_value = "1MiB", value_parser = size)]
    max_file_size: u64,
    /// Tokens per chunk, special tokens included [default: the model's max_seq_length]
    #[arg(long, value_parser = positive)]
    chunk_tokens: Option<usize>,
    /// Tokens shared by neighbouring chunks [default: 32, at most an
    /// eighth of the chunk]
    #[arg(long)]
    overlap: Option<usize>,
    /// Chunks per window (embedded, written and cached together).
    #[arg(long, default_value_t = WINDOW, value_parser = positive, hide = true)]
    window: usize,
    /// Stop with an error after this many windows, as a crash would
    /// (for testing that an interrupted run leaves a usable index).
    #[arg(long, hide = true)]
    fail_after_windows: Option<usize>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Meta {
    pub(super) model: String,
    pub(super) dimension: usize,
    root: PathBuf,
    files: usize,
    chunks: usize,
}

#[derive(Serialize, Debug)]
struct Summary {
    files: usize,
    chunks: usize,
    embedded: usize,
    reused: usize,
    seconds: f64,
    peak_rss_bytes: u64,
    skipped: Vec<Skipped>,
    index: PathBuf,
}

/// Indexes `index.dir` into `index.out`.
pub(super) fn index(args: &Args, index: &IndexArgs) -> Result<(), Failure> {
    let IndexArgs {
        dir,
        out,
        memory_budget,
        max_file_size,
        chunk_tokens,
        overlap,
        window,
        fail_after_windows,
    } = index;
    let started = Instant::now();
    if !dir.is_dir() {
        return Err(fail(format!("{}: no such directory", dir.display())));
    }
    let root = dir
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let mut config = model_config(args)?;
    if let Some(limit) = memory_budget {
        config = config.into_builder().memory_limit(*limit).build()?;
    }
    let embedder = BertEmbedder::from_config(config.model())?;
    let model_id = model_id(&config, &embedder)?;
    let chunker = Chunker::new(
        embedder.token_counter()?,
        embedder.max_seq_length(),
        *chunk_tokens,
        *overlap,
    )
    .map_err(|e| fail(settings_message(&e)))?;

    std::fs::create_dir_all(out).map_err(|e| fail(format!("{}: {e}", out.display())))?;
    let db = cache::open(out)?;
    remove_stale_generations(out)?;

    let out_abs = out.canonicalize()?;
    let walk_options = WalkOptions {
        exclude: Some(out_abs),
        glob: None,
    };
    let (files, mut skipped) = walk(&root, &walk_options).map_err(fail)?;
    if !args.json {
        for s in &skipped {
            eprintln!("skipped {}: {}", s.path, s.reason);
        }
    }
    let bar = progress_bar(files.len() as u64, args.json);
    let bar_for_batches = bar.clone();
    let dimension = embedder.dimension();
    let batcher = BatchEmbedder::with_config(embedder, &config)?.with_progress(move |p| {
        bar_for_batches.set_message(format!(
            "batch {} · {} MiB",
            p.batch_size,
            p.memory_bytes >> 20
        ))
    });

    let generation = format!("gen-{}-{}", std::process::id(), unique_suffix());
    let tmp = out.join(format!("{generation}.tmp"));
    std::fs::create_dir_all(&tmp)?;
    let mut writer = IndexWriter::create(&tmp, dimension)?;
    let mut pending: Vec<(ChunkMeta, String)> = Vec::new();
    let (mut indexed_files, mut embedded, mut reused, mut windows) = (0, 0, 0, 0);
    let mut flush = |pending: &mut Vec<(ChunkMeta, String)>,
                     writer: &mut IndexWriter,
                     windows: &mut usize|
     -> Result<(), Failure> {
        let (e, r) = cache::embed_window(&batcher, &db, &model_id, pending, writer)?;
        embedded += e;
        reused += r;
        *windows += 1;
        let done = embedded + reused;
        bar.set_prefix(format!(
            "{done} chunks ({:.1}/s)",
            done as f64 / started.elapsed().as_secs_f64().max(1e-9)
        ));
        if fail_after_windows.is_some_and(|n| *windows >= n) {
            return Err(fail(format!("stopped after {windows} windows, as asked")));
        }
        Ok(())
    };
    for path in &files {
        let rel = relative(&root, path);
        bar.inc(1);
        let text = match read_text(path, *max_file_size) {
            Ok(t) => t,
            Err(e) => {
                let reason = unreadable_message(&e);
                bar.suspend(|| {
                    if !args.json {
                        eprintln!("skipped {rel}: {reason}");
                    }
                });
                skipped.push(Skipped { path: rel, reason });
                continue;
            }
        };
        indexed_files += 1;
        for chunk in chunker.chunks(&text) {
            pending.push((ChunkMeta::new(&rel, &chunk), chunk.text.to_string()));
            if pending.len() >= *window {
                flush(&mut pending, &mut writer, &mut windows)?;
            }
        }
    }
    if !pending.is_empty() {
        flush(&mut pending, &mut writer, &mut windows)?;
    }
    bar.finish_and_clear();

    let chunks = writer.rows;
    writer.finish(&Meta {
        model: model_id.clone(),
        dimension,
        root: root.clone(),
        files: indexed_files,
        chunks,
    })?;
    switch_current(out, &tmp, &generation)?;
    // The index is complete and current: a failure to shrink the cache
    // is not worth failing the run for.
    if let Err(Failure(e)) = cache::forget_unused(&db) {
        eprintln!("membatch: warning: cannot drop unused cache entries: {e}");
    }

    let metrics = batcher.metrics();
    let summary = Summary {
        files: indexed_files,
        chunks,
        embedded,
        reused,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: metrics.peak_rss_bytes.max(current_rss()),
        skipped,
        index: out.join(&generation),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        if chunks == 0 {
            println!("nothing to index in {}", dir.display());
        }
        println!(
            "{} files, {} chunks ({} embedded, {} reused, {} skipped) in {:.1} s; peak RSS {} MiB; batches {}, padding ratio {:.2}",
            summary.files,
            summary.chunks,
            summary.embedded,
            summary.reused,
            summary.skipped.len(),
            summary.seconds,
            summary.peak_rss_bytes >> 20,
            metrics.batches,
            metrics.padding_ratio()
        );
    }
    Ok(())
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
    fn new(path: &str, chunk: &Chunk<'_>) -> Self {
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

/// A chunk-settings error in this command's flags.
fn settings_message(e: &membatch_cli::corpus::ChunkSettingsError) -> String {
    use membatch_cli::corpus::ChunkSettingsError as E;
    match e {
        E::TooFewTokens(_) => "--chunk-tokens must be above 2 ([CLS] and [SEP] take two)".into(),
        E::OverlapTooLarge { overlap, capacity } => format!(
            "--overlap ({overlap}) must be smaller than a chunk's {capacity} content tokens"
        ),
        other => other.to_string(),
    }
}

/// Why a file is skipped, naming this command's flag for the size limit.
fn unreadable_message(e: &Unreadable) -> String {
    match e {
        Unreadable::TooLarge { size, max } => format!(
            "{} is larger than --max-file-size ({})",
            bytesize::ByteSize(*size),
            bytesize::ByteSize(*max)
        ),
        other => other.to_string(),
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
    fn create(dir: &Path, dimension: usize) -> std::io::Result<Self> {
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

    /// Writes the safetensors file by streaming the rows after its header,
    /// then `meta.json`, and syncs everything to disk.
    ///
    /// The header is written by hand because the `safetensors` crate
    /// serialises only tensors held in memory, and the point here is never
    /// to hold the whole matrix.
    fn finish(mut self, meta: &Meta) -> Result<(), Failure> {
        self.chunks.flush()?;
        self.chunks.get_ref().sync_all()?;
        let mut rows = self
            .rows_file
            .into_inner()
            .map_err(|e| fail(e.to_string()))?;
        let bytes = (self.rows * self.dimension * 4) as u64;
        let header = serde_json::json!({
            "__metadata__": { "model": meta.model },
            "embeddings": {
                "dtype": "F32",
                "shape": [self.rows, self.dimension],
                "data_offsets": [0, bytes],
            }
        })
        .to_string();
        // The data must start 8-byte aligned: pad the header with spaces.
        let mut header = header.into_bytes();
        while !header.len().is_multiple_of(8) {
            header.push(b' ');
        }
        let path = self.dir.join("embeddings.safetensors");
        let mut out = BufWriter::new(File::create(&path)?);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
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
fn switch_current(out: &Path, tmp: &Path, generation: &str) -> Result<(), Failure> {
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
fn remove_stale_generations(out: &Path) -> Result<(), Failure> {
    let current = read_current(out)?;
    for entry in std::fs::read_dir(out)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_generation(&name) && Some(&name) != current.as_ref() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn current_rss() -> u64 {
    SystemProbe::new().snapshot().rss_bytes.unwrap_or(0)
}

fn progress_bar(files: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} files · {prefix} · {per_sec} files · {msg} · {elapsed}",
        )
        .expect("a valid template"),
    );
    bar
}
