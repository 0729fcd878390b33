//! Writing an index: one generation directory per run, streamed window by
//! window, made current atomically once complete.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use membatch::batch::BatchMetrics;
use membatch::memory::{MemoryBudget, MemoryProbe, SystemProbe};
use membatch::{BatchEmbedder, BertEmbedder, BertEmbedderBuilder, EmbedOptions, Embedder, Prompt};
use serde::Serialize;

use super::cache::{Key, VectorCache};
use super::writer::{remove_stale_generations, switch_current, ChunkMeta, IndexWriter, Meta};
use super::{document_prompt, model_config, model_id, prompt_label, Args, WINDOW};
use membatch_bin::{fail, positive, size, Failure};
use membatch_corpus::{read_text, relative, walk, Chunker, Skipped, Unreadable, WalkOptions};

/// `membatch codebase index`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub(super) struct IndexArgs {
    /// The tree to index.
    dir: PathBuf,
    /// Where the index and its cache live.
    #[arg(long)]
    out: PathBuf,
    /// Skip files larger than this.
    #[arg(long, default_value = "1MiB", value_parser = size)]
    max_file_size: u64,
    /// Tokens per chunk, special tokens included [default: the model's max_seq_length,
    /// less the document prompt's tokens]
    #[arg(long, value_parser = positive)]
    chunk_tokens: Option<usize>,
    /// Tokens shared by neighbouring chunks [default: 32, at most an
    /// eighth of the chunk]
    #[arg(long)]
    overlap: Option<usize>,
    /// Chunks per window (embedded, written and cached together).
    #[arg(long, default_value_t = WINDOW, value_parser = positive, hide = true)]
    window: usize,
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

/// Indexes `index.dir` into `index.out`, and prints what it did.
pub(super) fn index(args: &Args, index: &IndexArgs) -> Result<(), Failure> {
    let (summary, metrics) = index_with(args, index, |model| model)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        if summary.chunks == 0 {
            println!("nothing to index in {}", index.dir.display());
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

/// As [`index`] without the printing, running the model through `wrap`
/// (a test wraps it in an embedder that fails part-way, as a crash would).
fn index_with<E: Embedder>(
    args: &Args,
    index: &IndexArgs,
    wrap: impl FnOnce(BertEmbedder) -> E,
) -> Result<(Summary, BatchMetrics), Failure> {
    let IndexArgs {
        dir,
        out,
        max_file_size,
        chunk_tokens,
        overlap,
        window,
    } = index;
    let started = Instant::now();
    if !dir.is_dir() {
        return Err(fail(format!("{}: no such directory", dir.display())));
    }
    let root = dir
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let config = model_config(args)?;
    // One budget for the load and the batches (MemoryBudget::admit_load).
    let budget = MemoryBudget::new(config.memory().clone());
    let embedder = BertEmbedderBuilder::from(config.model().clone())
        .budget(budget.clone())
        .build()?;
    let model_id = model_id(&config, &embedder)?;
    let prompt = document_prompt(&config, &embedder);
    let options = EmbedOptions::new().with_prompt(prompt.clone());
    options.check(&embedder)?;
    // A chunk and its prompt must fit the model together: chunks are sized
    // in the tokens the prompt leaves.
    let prompt_tokens = match &prompt {
        Prompt::Named(name) => {
            let behind = embedder.tokenize_prompted(&[""], Some(name))?[0].len();
            behind.saturating_sub(embedder.tokenize_prompted(&[""], None)?[0].len())
        }
        _ => 0,
    };
    // The cache keys name the prompt: vectors behind another prompt are
    // never reused.
    let cache_model = format!("{model_id} prompt:{:?}", prompt_label(&prompt));
    let chunker = Chunker::new(
        embedder.token_counter()?,
        embedder
            .info()
            .max_seq_length
            .saturating_sub(prompt_tokens)
            .max(3),
        *chunk_tokens,
        *overlap,
    )
    .map_err(|e| fail(settings_message(&e)))?;
    let embedder = wrap(embedder);

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
    let batcher = BatchEmbedder::new(embedder, budget, *config.batch())?.with_progress(move |p| {
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
    let (mut indexed_files, mut embedded, mut reused) = (0, 0, 0);
    let mut flush =
        |pending: &mut Vec<(ChunkMeta, String)>, writer: &mut IndexWriter| -> Result<(), Failure> {
            let (e, r) = embed_window(&batcher, &options, &cache, &cache_model, pending, writer)?;
            embedded += e;
            reused += r;
            let done = embedded + reused;
            bar.set_prefix(format!(
                "{done} chunks ({:.1}/s)",
                done as f64 / started.elapsed().as_secs_f64().max(1e-9)
            ));
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
                flush(&mut pending, &mut writer)?;
            }
        }
    }
    if !pending.is_empty() {
        flush(&mut pending, &mut writer)?;
    }
    bar.finish_and_clear();

    let chunks = writer.rows();
    writer.finish(&Meta {
        model: model_id.clone(),
        document_prompt: prompt_label(&prompt),
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
    Ok((summary, metrics))
}

/// Embeds the chunks of one window that the cache does not hold, stores
/// them (marking every key of the window seen), and writes every chunk of
/// the window, reused or new, to the index in order. Returns (embedded,
/// reused).
fn embed_window<E: Embedder>(
    batcher: &BatchEmbedder<E>,
    options: &EmbedOptions,
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
        for (&i, v) in missing.iter().zip(batcher.embed_with(&texts, options)?) {
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use clap::Parser;
    use membatch::{ModelInfo, Tokens};
    use membatch_testkit::tiny::{tiny_model_dir, Tiny};

    use super::*;
    use crate::Cli;

    /// The tiny model, failing every batch after its first `ok` ones.
    struct FailsAfter {
        inner: BertEmbedder,
        ok: usize,
        calls: AtomicUsize,
    }

    impl Embedder for FailsAfter {
        fn info(&self) -> ModelInfo {
            self.inner.info()
        }
        fn tokenize(&self, texts: &[&str]) -> membatch::Result<Vec<Tokens>> {
            self.inner.tokenize(texts)
        }
        fn embed_tokens(&self, batch: &[&Tokens]) -> membatch::Result<Vec<Vec<f32>>> {
            if self.calls.fetch_add(1, Ordering::SeqCst) >= self.ok {
                return Err(membatch::Error::MemoryUnknown);
            }
            self.inner.embed_tokens(batch)
        }
    }

    fn write_tree(root: &Path, tag: &str) {
        for i in 0..4 {
            let body: String = (1..=12)
                .map(|l| format!("{tag}{i} line {l} alpha beta gamma delta\n"))
                .collect();
            std::fs::write(root.join(format!("f{i}.txt")), body).unwrap();
        }
    }

    fn args(model: &Path, tree: &Path, out: &Path) -> (Args, IndexArgs) {
        let cli = Cli::try_parse_from([
            "membatch",
            "codebase",
            "index",
            tree.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--window",
            "3",
            "--json",
        ])
        .unwrap();
        let crate::Command::Codebase(args) = cli.command else {
            panic!("a codebase command")
        };
        let index = match &args.command {
            super::super::Command::Index(index) => index.clone(),
            other => panic!("{other:?}"),
        };
        (args, index)
    }

    fn tmp_dirs(out: &Path) -> usize {
        std::fs::read_dir(out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    }

    #[test]
    fn an_interrupted_run_keeps_the_old_index_and_its_progress() {
        let model = tiny_model_dir(&Tiny::default());
        let tree = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (args, index) = args(model.path(), tree.path(), out.path());
        write_tree(tree.path(), "old");
        let (first, _) = index_with(&args, &index, |m| m).unwrap();
        let current = || std::fs::read_to_string(out.path().join("CURRENT")).unwrap();
        let before = current();

        write_tree(tree.path(), "new");
        // A window's three new chunks are one batch (the batcher starts at
        // eight texts), so two batches are two windows committed.
        let failing = |inner| FailsAfter {
            inner,
            ok: 2,
            calls: AtomicUsize::new(0),
        };
        let Err(Failure(e)) = index_with(&args, &index, failing) else {
            panic!("the run was to fail part-way");
        };
        assert!(e.contains("cannot tell how much memory"), "{e}");
        assert_eq!(current(), before, "the complete index is still current");
        let old = out.path().join(before.trim());
        let rows = std::fs::read_to_string(old.join("chunks.jsonl")).unwrap();
        assert_eq!(rows.lines().count(), first.chunks, "the old index is whole");
        assert!(
            rows.contains("old1 line") && !rows.contains("new"),
            "{rows}"
        );
        assert_eq!(
            tmp_dirs(out.path()),
            1,
            "the interrupted generation is left"
        );

        let (after, _) = index_with(&args, &index, |m| m).unwrap();
        assert!(
            after.reused >= 6,
            "the two windows committed before the failure are reused: {after:?}"
        );
        assert_eq!(after.embedded + after.reused, after.chunks);
        assert_ne!(current(), before);
        assert_eq!(tmp_dirs(out.path()), 0, "cleaned up");
    }
}
