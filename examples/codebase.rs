//! `codebase`: embed a whole source tree within a memory limit,
//! incrementally, and search it.
//!
//! ```text
//! cargo run --release --example codebase -- index <DIR> --out <INDEX_DIR>
//!     [--memory-budget SIZE|PERCENT] [--max-file-size SIZE]
//!     [--chunk-tokens N] [--overlap N] [--json]
//! cargo run --release --example codebase -- query <INDEX_DIR> "<text>" [-k N] [--json]
//! ```
//!
//! `index` walks `DIR` honouring `.gitignore` (the `ignore` crate; symlinks
//! are followed, loops are reported and skipped), skips binary files, files
//! over `--max-file-size` and files that are not UTF-8 (each with a
//! message), splits every file into chunks that fit the model in tokens
//! (`text-splitter` with the model's tokenizer), and embeds them through
//! `BatchEmbedder` within the memory budget. Results stream to disk window
//! by window, so memory stays flat whatever the tree's size.
//!
//! `INDEX_DIR` holds:
//! - `cache.redb`: blake3(model id, chunk text) → vector, committed after
//!   every window, so a re-run (or a run after an interruption) embeds only
//!   chunks it has not seen;
//! - `gen-<id>/`: one complete index: `embeddings.safetensors` (one F32
//!   matrix `embeddings`, a row per chunk), `chunks.jsonl` (path, byte and
//!   line range, first lines of each chunk, in row order), `meta.json`;
//! - `CURRENT`: the name of the complete generation, replaced atomically
//!   (write + rename) only once a new generation is fully written. Ctrl-C or
//!   a failure at any point leaves the previous index in place.
//!
//! With `--json`, `index` prints one JSON object at the end (`files`,
//! `chunks`, `embedded`, `reused`, `seconds`, `peak_rss_bytes`, `skipped`,
//! `index`) and `query` one JSON object per hit, best first (`score`,
//! `path` relative to the indexed root, `start_line`, `end_line`, `text`).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use membatch::memory::MemoryLimit;
use membatch::{BatchEmbedder, BertEmbedder, Config, Embedder, ModelSource};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, TextSplitter};

mod support;

/// Chunks embedded, written and committed to the cache at a time.
const WINDOW: usize = 512;
/// The cache: blake3 key → little-endian f32 vector.
const VECTORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vectors");
/// The keys this run used, so the cache can forget the others at the end
/// without holding every key in memory.
const SEEN: TableDefinition<&[u8], ()> = TableDefinition::new("seen");
/// Lines of each chunk kept in `chunks.jsonl` for showing hits.
const PREVIEW_LINES: usize = 4;

#[derive(Parser, Debug)]
#[command(
    name = "codebase",
    about = "Embed a source tree within a memory limit, and search it"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Model directory or Hugging Face repo id [default: $MEMBATCH_MODEL, else all-MiniLM-L6-v2]
    #[arg(long, global = true)]
    model: Option<String>,
    /// Compute threads [default: $EMBEDDING_THREADS, RAYON_NUM_THREADS, else all cores]
    #[arg(long, global = true, value_parser = positive)]
    threads: Option<usize>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Index the files under DIR into INDEX_DIR.
    Index {
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
    },
    /// Print the chunks most similar to TEXT.
    Query {
        /// An index written by `index`.
        index: PathBuf,
        /// What to look for.
        text: String,
        /// How many hits.
        #[arg(short, default_value_t = 5, value_parser = positive)]
        k: usize,
    },
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}

fn memory_limit(s: &str) -> Result<MemoryLimit, String> {
    MemoryLimit::parse("--memory-budget", s).map_err(|e| e.to_string())
}

fn size(s: &str) -> Result<u64, String> {
    membatch::memory::parse_size("--max-file-size", s).map_err(|e| e.to_string())
}

/// A one-line failure for stderr.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure(msg.into())
}

fn main() -> ExitCode {
    support::one_line_panics("codebase");
    support::init_logging();
    let args = match support::parse_args::<Args>("codebase") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let result = match &args.command {
        Command::Index { .. } => index(&args),
        Command::Query { .. } => query(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(m)) => {
            eprintln!("codebase: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// The settings both subcommands use.
fn model_config(args: &Args) -> Result<Config, Failure> {
    let mut config = Config::from_env()?;
    let source = match &args.model {
        Some(m) => ModelSource::parse(m),
        None => config
            .model
            .source
            .clone()
            .unwrap_or_else(ModelSource::from_env_or_default),
    };
    config.model.source = Some(source.clone());
    if let Some(t) = args.threads {
        config.model.threads = Some(t);
    }
    Ok(config)
}

/// An id for the model as it runs: a blake3 hash of its files and the
/// settings in force. Vectors from another model, other weights behind the
/// same path or other settings are never reused; the same model reached by
/// another path is.
fn model_id(config: &Config, embedder: &BertEmbedder) -> Result<String, Failure> {
    let source = config
        .model
        .source
        .clone()
        .unwrap_or_else(ModelSource::from_env_or_default);
    let files = source.resolve()?;
    let mut h = blake3::Hasher::new();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        let path = files.required(name)?;
        std::io::copy(&mut open(&path)?, &mut h)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    }
    Ok(format!(
        "{} {:?} blake3:{}",
        source_name(&source),
        embedder.settings(),
        &h.finalize().to_hex()[..16]
    ))
}

/// The model's name for messages: a repo id, or a directory's last part.
fn source_name(source: &ModelSource) -> String {
    match source {
        ModelSource::Dir(p) => p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        other => other.to_string(),
    }
}

/// One chunk of one file, as stored in `chunks.jsonl`.
#[derive(Serialize, Deserialize, Debug)]
struct ChunkMeta {
    path: String,
    start_byte: usize,
    end_byte: usize,
    start_line: usize,
    end_line: usize,
    text: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Meta {
    model: String,
    dimension: usize,
    root: PathBuf,
    files: usize,
    chunks: usize,
}

#[derive(Serialize, Debug)]
struct Skipped {
    path: String,
    reason: String,
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

fn index(args: &Args) -> Result<(), Failure> {
    let Command::Index {
        dir,
        out,
        memory_budget,
        max_file_size,
        chunk_tokens,
        overlap,
        window,
        fail_after_windows,
    } = &args.command
    else {
        unreachable!("called for index only")
    };
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
    let embedder = BertEmbedder::from_config(&config.model)?;
    let model_id = model_id(&config, &embedder)?;
    let max_seq = embedder.max_seq_length();
    if chunk_tokens.is_some_and(|n| n <= 2) {
        return Err(fail(
            "--chunk-tokens must be above 2 ([CLS] and [SEP] take two)",
        ));
    }
    let capacity = chunk_tokens
        .unwrap_or(max_seq)
        .min(max_seq)
        .saturating_sub(2);
    let overlap = overlap.unwrap_or(32.min(capacity / 8));
    if capacity == 0 || overlap >= capacity {
        return Err(fail(format!(
            "--overlap ({overlap}) must be smaller than a chunk's {capacity} content tokens"
        )));
    }
    // The splitter counts content tokens without truncation.
    let mut sizer = embedder.tokenizer().clone();
    sizer
        .with_truncation(None)
        .map_err(|e| fail(e.to_string()))?;
    let splitter = TextSplitter::new(
        ChunkConfig::new(capacity)
            .with_sizer(sizer)
            .with_overlap(overlap)
            .map_err(|e| fail(e.to_string()))?,
    );

    std::fs::create_dir_all(out).map_err(|e| fail(format!("{}: {e}", out.display())))?;
    // Opening the cache takes redb's exclusive lock: a second run on the
    // same INDEX_DIR stops here, before it touches any generation.
    let db = Database::create(out.join("cache.redb"))
        .map_err(|e| fail(format!("{}: {e}", out.join("cache.redb").display())))?;
    {
        // Both tables exist from here on; `SEEN` starts empty each run.
        let txn = db.begin_write()?;
        txn.open_table(VECTORS)?;
        txn.delete_table(SEEN)?;
        txn.open_table(SEEN)?;
        txn.commit()?;
    }
    remove_stale_generations(out)?;

    let out_abs = out.canonicalize()?;
    let (files, mut skipped) = walk(&root, &out_abs);
    if !args.json {
        for s in &skipped {
            eprintln!("skipped {}: {}", s.path, s.reason);
        }
    }
    let bar = progress_bar(files.len() as u64, args.json);
    let bar_for_batches = bar.clone();
    let dimension = embedder.dimension();
    let batcher = BatchEmbedder::new(
        embedder,
        membatch::MemoryBudget::new(config.memory.clone()),
        config.batch,
    )?
    .with_progress(move |p| {
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
        let (e, r) = embed_window(&batcher, &db, &model_id, pending, writer)?;
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
            Err(reason) => {
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
        let lines = LineIndex::new(&text);
        for (offset, chunk) in splitter.chunk_indices(&text) {
            let end = offset + chunk.len();
            let meta = ChunkMeta {
                path: rel.clone(),
                start_byte: offset,
                end_byte: end,
                start_line: lines.line_of(offset),
                end_line: lines.line_of(end.saturating_sub(1).max(offset)),
                text: chunk
                    .lines()
                    .take(PREVIEW_LINES)
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            pending.push((meta, chunk.to_string()));
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
    if let Err(Failure(e)) = forget_unused(&db) {
        eprintln!("codebase: warning: cannot drop unused cache entries: {e}");
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

/// Embeds the chunks of one window that the cache does not hold, caches
/// them and marks every key of the window seen in one transaction, and
/// writes every chunk of the window (reused or new) to the index in order.
/// Returns (embedded, reused).
fn embed_window(
    batcher: &BatchEmbedder<BertEmbedder>,
    db: &Database,
    model_id: &str,
    pending: &mut Vec<(ChunkMeta, String)>,
    writer: &mut IndexWriter,
) -> Result<(usize, usize), Failure> {
    let dimension = batcher.embedder().dimension();
    let keys: Vec<[u8; 32]> = pending
        .iter()
        .map(|(_, text)| {
            let mut h = blake3::Hasher::new();
            h.update(model_id.as_bytes());
            h.update(&[0]);
            h.update(text.as_bytes());
            *h.finalize().as_bytes()
        })
        .collect();
    let mut vectors: Vec<Option<Vec<f32>>> = {
        let txn = db.begin_read()?;
        let table = txn.open_table(VECTORS)?;
        keys.iter()
            .map(|k| {
                let v = table.get(k.as_slice())?.map(|v| from_le_bytes(v.value()));
                // A vector of the wrong length is a miss, overwritten below.
                Ok(v.filter(|v| v.len() == dimension))
            })
            .collect::<Result<_, Failure>>()?
    };
    let missing: Vec<usize> = (0..pending.len())
        .filter(|&i| vectors[i].is_none())
        .collect();
    let fresh = if missing.is_empty() {
        Vec::new()
    } else {
        let texts: Vec<&str> = missing.iter().map(|&i| pending[i].1.as_str()).collect();
        batcher.embed(&texts)?
    };
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(VECTORS)?;
        for (&i, v) in missing.iter().zip(fresh) {
            table.insert(keys[i].as_slice(), to_le_bytes(&v).as_slice())?;
            vectors[i] = Some(v);
        }
        let mut seen = txn.open_table(SEEN)?;
        for k in &keys {
            seen.insert(k.as_slice(), ())?;
        }
    }
    // Committed per window: an interrupted run keeps what it embedded.
    txn.commit()?;
    for ((meta, _), v) in pending.iter().zip(vectors) {
        let v = v.ok_or_else(|| fail("a chunk has no vector (cache and embedder disagree)"))?;
        writer.push(meta, &v)?;
    }
    let embedded = missing.len();
    let reused = pending.len() - embedded;
    pending.clear();
    Ok((embedded, reused))
}

/// Drops cached vectors no chunk of this run used (deleted or edited
/// code), so the cache does not grow without bound.
fn forget_unused(db: &Database) -> Result<(), Failure> {
    let txn = db.begin_write()?;
    {
        let seen = txn.open_table(SEEN)?;
        let mut table = txn.open_table(VECTORS)?;
        let mut lookup_failed = false;
        table.retain(|k, _| match seen.get(k) {
            Ok(hit) => hit.is_some(),
            Err(_) => {
                lookup_failed = true;
                true
            }
        })?;
        if lookup_failed {
            return Err(fail("the cache's seen-table could not be read"));
        }
    }
    txn.delete_table(SEEN)?;
    txn.commit()?;
    Ok(())
}

/// Files under `root`, sorted, honouring `.gitignore` and skipping hidden
/// files and directories (`.git/`, `.github/`, dotfiles) and the index
/// directory itself; walk errors (a symlink loop, an unreadable directory)
/// become skipped entries.
fn walk(root: &Path, out: &Path) -> (Vec<PathBuf>, Vec<Skipped>) {
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
fn read_text(path: &Path, max_size: u64) -> Result<String, String> {
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

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// 1-based line numbers of byte offsets.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// Writes `chunks.jsonl` and the rows of the embedding matrix as they come;
/// `finish` wraps the rows into `embeddings.safetensors`.
struct IndexWriter {
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

    fn push(&mut self, meta: &ChunkMeta, vector: &[f32]) -> Result<(), Failure> {
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
        while header.len() % 8 != 0 {
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
fn read_current(out: &Path) -> Result<Option<String>, Failure> {
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
    use membatch::memory::MemoryProbe;
    membatch::memory::SystemProbe::new()
        .snapshot()
        .rss_bytes
        .unwrap_or(0)
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

fn to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_le_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[derive(Serialize)]
struct Hit<'a> {
    score: f32,
    path: &'a str,
    start_line: usize,
    end_line: usize,
    text: &'a str,
}

/// Opens `path`, naming it in the error.
fn open(path: &Path) -> Result<File, Failure> {
    File::open(path).map_err(|e| fail(format!("{}: {e}", path.display())))
}

fn query(args: &Args) -> Result<(), Failure> {
    let Command::Query { index, text, k } = &args.command else {
        unreachable!("called for query only")
    };
    let Some(current) = read_current(index)? else {
        return Err(fail(format!(
            "{}: no index here (run `codebase index <DIR> --out {}` first)",
            index.display(),
            index.display()
        )));
    };
    // Open everything before the (slower) model load: a later `index` run
    // may replace this generation, but open files stay readable.
    let gen = index.join(current);
    let meta_path = gen.join("meta.json");
    let meta: Meta = serde_json::from_reader(open(&meta_path)?)
        .map_err(|e| fail(format!("{}: {e}", meta_path.display())))?;
    let matrix_file = open(&gen.join("embeddings.safetensors"))?;
    let chunks_file = open(&gen.join("chunks.jsonl"))?;

    let config = model_config(args)?;
    let embedder = BertEmbedder::from_config(&config.model)?;
    let model_id = model_id(&config, &embedder)?;
    if meta.model != model_id {
        return Err(fail(format!(
            "the index was built with {} but this query would use {model_id}; pass the same --model",
            meta.model
        )));
    }
    let q = embedder.embed(&[text.as_str()])?.remove(0);

    // SAFETY: a generation's files are never modified once written; a later
    // run writes a new generation and removes this one, which leaves the
    // mapping valid.
    let map = unsafe { memmap2::Mmap::map(&matrix_file)? };
    let tensors = safetensors::SafeTensors::deserialize(&map)?;
    let matrix = tensors.tensor("embeddings")?;
    let dim = meta.dimension;
    let q_norm = norm(&q).max(f32::MIN_POSITIVE);
    // The k best rows, scored in place: memory stays flat in the index size.
    let mut best: std::collections::BinaryHeap<std::cmp::Reverse<(Score, usize)>> =
        std::collections::BinaryHeap::with_capacity(k + 1);
    for (row, bytes) in matrix.data().chunks_exact(dim * 4).enumerate() {
        let (mut dot, mut sq) = (0f32, 0f32);
        for (c, qi) in bytes.chunks_exact(4).zip(&q) {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            dot += x * qi;
            sq += x * x;
        }
        let score = dot / (q_norm * sq.sqrt()).max(f32::MIN_POSITIVE);
        if score.is_nan() {
            continue;
        }
        best.push(std::cmp::Reverse((Score(score), row)));
        if best.len() > *k {
            best.pop();
        }
    }
    let mut wanted: Vec<(usize, f32)> = best
        .into_iter()
        .map(|std::cmp::Reverse((Score(s), r))| (r, s))
        .collect();
    wanted.sort_by_key(|&(r, _)| r);
    let mut hits: Vec<(f32, ChunkMeta)> = Vec::new();
    let mut next = wanted.iter().peekable();
    for (row, line) in BufReader::new(chunks_file).lines().enumerate() {
        let Some(&&(r, s)) = next.peek() else { break };
        if r == row {
            hits.push((s, serde_json::from_str(&line?)?));
            next.next();
        }
    }
    hits.sort_by(|a, b| b.0.total_cmp(&a.0));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (score, m) in &hits {
        if args.json {
            let hit = Hit {
                score: *score,
                path: &m.path,
                start_line: m.start_line,
                end_line: m.end_line,
                text: &m.text,
            };
            writeln!(out, "{}", serde_json::to_string(&hit)?)?;
        } else {
            writeln!(
                out,
                "{score:.3}  {}:{}-{}",
                m.path, m.start_line, m.end_line
            )?;
            for l in m.text.lines() {
                writeln!(out, "        {l}")?;
            }
        }
    }
    Ok(())
}

/// A similarity that orders totally (NaN never gets here).
#[derive(Clone, Copy, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn norm(a: &[f32]) -> f32 {
    a.iter().map(|x| x * x).sum::<f32>().sqrt()
}
