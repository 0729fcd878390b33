//! `embed`: texts on stdin, one per line, to JSON Lines embeddings on stdout.
//!
//! ```text
//! cargo run --example embed -- [--model DIR|REPO] [--memory-budget SIZE|PERCENT]
//!     [--batch-size N | --fixed-batch N] [--threads N] [--precision f32|int8]
//!     [--no-normalize] < texts.txt
//! ```
//!
//! Contract (other tools rely on it):
//! - input is UTF-8, one text per line; a final empty line after the last
//!   newline is not a text, an empty line in the middle is the empty string;
//!   a trailing `\r` (CRLF input) is dropped;
//! - output is one `{"index": N, "embedding": [...]}` line per input text, in
//!   input order, written window by window so memory stays flat for any
//!   number of lines;
//! - the model defaults to what the library resolves (`MEMBATCH_MODEL`, else the
//!   fetched all-MiniLM-L6-v2, else the hub); the other settings default to
//!   `Config::from_env()` (the `MEMBATCH_*` variables, docs/configuration.md);
//! - any error is one line on stderr and a non-zero exit code.
//!
//! By default texts run through `BatchEmbedder`: within each window of
//! input lines they are ordered by length and batched to fit the memory
//! budget. `--fixed-batch N` switches all of that off and runs plain batches
//! of N in input order, with no planning: the naive baseline (the embedder
//! still refuses a batch that cannot fit, with a typed error).

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;
use membatch::memory::MemoryLimit;

use membatch::{BatchEmbedder, BertEmbedder, Config, Embedder, ModelSource, Precision};

/// Lines read, embedded and written at a time: large enough for length
/// ordering to pay, small enough that memory stays flat.
const WINDOW: usize = 2048;

/// Embed texts from stdin (one per line) and write JSON Lines to stdout.
#[derive(Parser, Debug)]
#[command(name = "embed")]
struct Args {
    /// Model directory or Hugging Face repo id [default: $MEMBATCH_MODEL, else all-MiniLM-L6-v2]
    #[arg(long)]
    model: Option<String>,
    /// Memory budget, a size (300MiB, 1.5GB) or a percentage of the
    /// container's or machine's memory (70%) [default: $MEMBATCH_MAX_MEMORY, else 70%]
    #[arg(long, value_parser = memory_limit)]
    memory_budget: Option<MemoryLimit>,
    /// Largest batch [default: $MEMBATCH_MAX_BATCH_SIZE, else 64]
    #[arg(long, value_parser = membatch_bin::positive, conflicts_with = "fixed_batch")]
    batch_size: Option<usize>,
    /// Plain batches of N texts in input order: no length ordering, no
    /// memory checks, no adaptation (the naive baseline).
    #[arg(long, value_parser = membatch_bin::positive)]
    fixed_batch: Option<usize>,
    /// Compute threads [default: $MEMBATCH_THREADS, RAYON_NUM_THREADS, else all cores]
    #[arg(long, value_parser = membatch_bin::positive)]
    threads: Option<usize>,
    /// Weights in f32 (exact) or int8 (a third of the memory) [default: $MEMBATCH_PRECISION, else f32]
    #[arg(long, value_parser = precision)]
    precision: Option<Precision>,
    /// Output raw pooled vectors instead of L2-normalised ones.
    #[arg(long)]
    no_normalize: bool,
}

fn precision(s: &str) -> Result<Precision, String> {
    s.parse()
        .map_err(|e: membatch::ParsePrecisionError| e.to_string())
}

fn memory_limit(s: &str) -> Result<MemoryLimit, String> {
    MemoryLimit::parse("--memory-budget", s).map_err(|e| e.to_string())
}

#[derive(serde::Serialize)]
struct Line<'a> {
    index: usize,
    embedding: &'a [f32],
}

fn main() -> ExitCode {
    membatch_bin::one_line_panics("embed");
    let args = match membatch_bin::parse_args::<Args>("embed") {
        Ok(a) => a,
        Err(code) => return code,
    };
    membatch_bin::init_logging("error", membatch_bin::LogFormat::Text);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Message(m)) => {
            eprintln!("embed: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// stdout was closed (e.g. piped into `head`): stop quietly.
    BrokenPipe,
    Message(String),
}

impl From<membatch::Error> for Failure {
    fn from(e: membatch::Error) -> Self {
        Failure::Message(membatch_bin::Failure::from(e).0)
    }
}

fn write_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::BrokenPipe
    } else {
        Failure::Message(format!("cannot write to stdout: {e}"))
    }
}

fn run(args: Args) -> Result<(), Failure> {
    let config = Config::from_env()?;
    let min_batch_size = config.batch().min_batch_size();
    let mut builder = config.into_builder();
    if let Some(m) = &args.model {
        builder = builder.source(ModelSource::parse(m));
    }
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    if args.no_normalize {
        builder = builder.normalize(false);
    }
    if let Some(p) = args.precision {
        builder = builder.precision(p);
    }
    if let Some(limit) = args.memory_budget {
        builder = builder.memory_limit(limit);
    }
    if let Some(n) = args.batch_size {
        builder = builder
            .max_batch_size(n)
            .min_batch_size(min_batch_size.min(n));
    }
    let config = builder.build()?;

    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.fixed_batch {
        Some(n) => {
            let embedder = BertEmbedder::from_config(config.model())?;
            for_each_window(n, |first, texts| {
                write_lines(&mut out, first, &embedder.embed(&as_strs(texts))?)
            })?;
        }
        None => {
            let batcher = BatchEmbedder::load(&config)?;
            for_each_window(WINDOW, |first, texts| {
                write_lines(&mut out, first, &batcher.embed(texts)?)
            })?;
            let m = batcher.metrics();
            tracing::info!(
                texts = m.texts,
                batches = m.batches,
                retries = m.retries,
                padding_ratio = m.padding_ratio(),
                peak_memory_bytes = m.peak_memory_bytes,
                "done"
            );
        }
    }
    out.flush().map_err(write_failure)
}

fn as_strs(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

/// Reads stdin in windows of `size` lines and hands each window, with the
/// index of its first line, to `f`.
fn for_each_window(
    size: usize,
    mut f: impl FnMut(usize, &[String]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let stdin = std::io::stdin().lock();
    let mut window: Vec<String> = Vec::with_capacity(size.min(WINDOW));
    let mut first = 0;
    for (line_no, line) in stdin.split(b'\n').enumerate() {
        let bytes = line.map_err(|e| Failure::Message(format!("cannot read stdin: {e}")))?;
        let mut text = String::from_utf8(bytes).map_err(|_| {
            Failure::Message(format!("line {} of stdin is not valid UTF-8", line_no + 1))
        })?;
        if text.ends_with('\r') {
            text.pop();
        }
        window.push(text);
        if window.len() == size {
            f(first, &window)?;
            first += window.len();
            window.clear();
        }
    }
    // `split` yields no item after a final newline, so a trailing empty line
    // is never a text, while empty lines in the middle are.
    if !window.is_empty() {
        f(first, &window)?;
    }
    Ok(())
}

/// Writes one JSON line per vector, numbered from `first`.
fn write_lines(out: &mut impl Write, first: usize, vectors: &[Vec<f32>]) -> Result<(), Failure> {
    for (i, v) in vectors.iter().enumerate() {
        let line = Line {
            index: first + i,
            embedding: v,
        };
        serde_json::to_writer(&mut *out, &line)
            .map_err(|e| write_failure(std::io::Error::from(e)))?;
        out.write_all(b"\n").map_err(write_failure)?;
    }
    Ok(())
}
