//! `membatch embed`: texts in (stdin or a file: lines, or a field of JSON
//! Lines), vectors out (JSON Lines, `.npy` or `.safetensors`), within the
//! memory budget.
//!
//! The input is read a window of texts at a time; each window runs through
//! `BatchEmbedder` (ordered by length, batched to fit the budget, retried
//! smaller under pressure) and is written out in input order before the
//! next is read, so memory stays flat in the number of texts.
//!
//! Contract:
//! - text input is UTF-8, one text per line; a final newline ends the last
//!   line, an empty line in the middle is the empty string, a trailing `\r`
//!   is dropped; with `--field`, each non-blank line is a JSON object whose
//!   string field is the text;
//! - JSON Lines output is one `{"index": N, "embedding": [...]}` per text,
//!   in input order; `.npy` is a float32 array of shape (texts, dimension);
//!   `.safetensors` holds one F32 tensor `embeddings` of that shape;
//! - a file is complete when it has its name: it is written under a
//!   temporary name beside it and renamed at the end;
//! - any error is one line on stderr and a non-zero exit code.

mod input;
mod output;

use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use membatch::{BatchEmbedder, BertEmbedder, Embedder};
use membatch_bin::{fail, EmbeddingGroups, Failure, Settings};

use input::{Layout, Texts};
pub(crate) use output::Format;
use output::Sink;

/// Texts read, embedded and written at a time: enough for length ordering
/// to pay, few enough that memory stays flat.
const WINDOW_TEXTS: usize = 2048;
/// A window also ends once its texts hold this many bytes.
const WINDOW_BYTES: usize = 32 << 20;

const EXAMPLES: &str = "\
Examples:
  membatch embed < texts.txt > vectors.jsonl
  membatch embed --input docs.jsonl --field body --output vectors.npy --memory-budget 400MiB
  membatch embed --prompt-name query --dimensions 256 --precision int8 < queries.txt";

/// `membatch embed`'s arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Read texts from this file instead of stdin.
    #[arg(long, short, value_name = "PATH")]
    input: Option<PathBuf>,
    /// Read JSON Lines and embed this string field of each object.
    #[arg(long, value_name = "NAME")]
    field: Option<String>,
    /// Write vectors to this file (complete when it appears) instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Output format [default: from --output's extension, else jsonl]
    #[arg(long, value_enum)]
    format: Option<Format>,
    #[command(flatten)]
    settings: Settings<EmbeddingGroups>,
}

/// Runs `membatch embed`.
pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    let format = Format::choose(args.format, args.output.as_deref())?;
    let layout = match (&args.field, &args.input) {
        (Some(field), _) => Layout::JsonLines {
            field: field.clone(),
        },
        (None, Some(path)) if path.extension().is_some_and(|e| e == "jsonl") => {
            return Err(fail(format!(
                "{} looks like JSON Lines: name the field to embed with --field",
                path.display()
            )))
        }
        (None, _) => Layout::Lines,
    };
    let (reader, name): (Box<dyn std::io::BufRead>, String) = match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| fail(format!("--input {}: {e}", path.display())))?;
            (
                Box::new(BufReader::with_capacity(1 << 20, file)),
                path.display().to_string(),
            )
        }
        None => (Box::new(std::io::stdin().lock()), "stdin".to_string()),
    };
    let mut texts = Texts::new(reader, layout, name.clone());
    let mut sink = Sink::create(args.output.as_deref(), format)?;

    // The first window before the model: an empty input is refused at
    // once, a bad first line without waiting for a load.
    let mut window = Vec::new();
    if !texts.next_window(&mut window, WINDOW_TEXTS, WINDOW_BYTES)? {
        return Err(fail(format!("{name} holds no texts: nothing to embed")));
    }

    let config = args.settings.builder()?.build()?;
    // The model loads under the budget its batches then share.
    let batcher = BatchEmbedder::load(&config)?;
    sink.begin(
        batcher.embedder().info().dimension,
        metadata(batcher.embedder()),
    )?;
    let bar = progress_bar();
    let done_before = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let batcher = {
        let bar = bar.clone();
        let done_before = done_before.clone();
        batcher.with_progress(move |p| {
            let done = done_before.load(std::sync::atomic::Ordering::Relaxed) + p.done as u64;
            bar.set_position(done);
            bar.set_message(format!(
                "{:.0} texts/s · batch {} · {} MiB",
                done as f64 / started.elapsed().as_secs_f64().max(1e-9),
                p.batch_size,
                p.memory_bytes >> 20
            ));
        })
    };
    loop {
        let vectors = batcher.embed(&window)?;
        sink.push(&vectors)?;
        if sink.closed() {
            break;
        }
        done_before.store(sink.rows(), std::sync::atomic::Ordering::Relaxed);
        if !texts.next_window(&mut window, WINDOW_TEXTS, WINDOW_BYTES)? {
            break;
        }
    }
    bar.finish_and_clear();
    let rows = sink.rows();
    sink.finish()?;
    let m = batcher.metrics();
    tracing::info!(
        texts = rows,
        batches = m.batches,
        retries = m.retries,
        peak_rss_bytes = m.peak_rss_bytes,
        seconds = started.elapsed().as_secs_f64(),
        "embedded"
    );
    Ok(())
}

/// What a safetensors file records of how its vectors were made.
fn metadata(embedder: &BertEmbedder) -> Vec<(String, String)> {
    let mut m = vec![
        ("format".to_string(), "membatch embed".to_string()),
        ("settings".to_string(), format!("{:?}", embedder.settings())),
    ];
    if let Some(prompt) = embedder.prompt_name() {
        m.push(("prompt_name".to_string(), prompt.to_string()));
    }
    m
}

/// A bar on stderr when it is a terminal: texts done, texts per second,
/// the batch size and the memory figure; nothing otherwise.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} texts · {msg} · {elapsed}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
