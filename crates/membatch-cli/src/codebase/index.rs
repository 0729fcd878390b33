//! Writing an index: one generation directory per run, streamed window by
//! window, made current atomically once complete.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use membatch::memory::{MemoryLimit, MemoryProbe, SystemProbe};
use membatch::{BatchEmbedder, BertEmbedder, Embedder};
use serde::Serialize;

use super::cache::{Key, VectorCache};
use super::writer::{remove_stale_generations, switch_current, ChunkMeta, IndexWriter, Meta};
use super::{memory_limit, model_config, model_id, size, Args, WINDOW};
use crate::support::{fail, positive, Failure};
use membatch_corpus::{read_text, relative, walk, Chunker, Skipped, Unreadable, WalkOptions};

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
        embedder.info().max_seq_length,
        *chunk_tokens,
        *overlap,
    )
    .map_err(|e| fail(settings_message(&e)))?;

    std::fs::create_dir_all(out).map_err(|e| fail(format!("{}: {e}", out.display())))?;
    let cache = VectorCache::open(out)?;
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
    let dimension = embedder.info().dimension;
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
        let (e, r) = embed_window(&batcher, &cache, &model_id, pending, writer)?;
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

    let chunks = writer.rows();
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
    if let Err(Failure(e)) = cache.forget_unused() {
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

/// Embeds the chunks of one window that the cache does not hold, stores
/// them (marking every key of the window seen), and writes every chunk of
/// the window, reused or new, to the index in order. Returns (embedded,
/// reused).
fn embed_window(
    batcher: &BatchEmbedder<BertEmbedder>,
    cache: &VectorCache,
    model_id: &str,
    pending: &mut Vec<(ChunkMeta, String)>,
    writer: &mut IndexWriter,
) -> Result<(usize, usize), Failure> {
    let keys: Vec<Key> = pending
        .iter()
        .map(|(_, text)| VectorCache::key(model_id, text))
        .collect();
    let mut vectors = cache.lookup(&keys, batcher.embedder().info().dimension)?;
    let missing: Vec<usize> = (0..pending.len())
        .filter(|&i| vectors[i].is_none())
        .collect();
    if !missing.is_empty() {
        let texts: Vec<&str> = missing.iter().map(|&i| pending[i].1.as_str()).collect();
        for (&i, v) in missing.iter().zip(batcher.embed(&texts)?) {
            vectors[i] = Some(v);
        }
    }
    let new: Vec<(&Key, &[f32])> = missing
        .iter()
        .filter_map(|&i| Some((&keys[i], vectors[i].as_deref()?)))
        .collect();
    // Stored per window: an interrupted run keeps what it embedded.
    cache.store(&keys, &new)?;
    for ((meta, _), v) in pending.iter().zip(&vectors) {
        let v = v
            .as_deref()
            .ok_or_else(|| fail("a chunk has no vector (cache and embedder disagree)"))?;
        writer.push(meta, v)?;
    }
    let embedded = missing.len();
    let reused = pending.len() - embedded;
    pending.clear();
    Ok((embedded, reused))
}

/// A chunk-settings error in this command's flags.
fn settings_message(e: &membatch_corpus::ChunkSettingsError) -> String {
    use membatch_corpus::ChunkSettingsError as E;
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
