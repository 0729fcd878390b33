//! `embed`: texts on stdin, one per line, to JSON Lines embeddings on stdout.
//!
//! ```text
//! cargo run --example embed -- [--model DIR|REPO] [--batch-size N] [--threads N] [--no-normalize] < texts.txt
//! ```
//!
//! Contract (other tools rely on it):
//! - input is UTF-8, one text per line; a final empty line after the last
//!   newline is not a text, an empty line in the middle is the empty string;
//!   a trailing `\r` (CRLF input) is dropped;
//! - output is one `{"index": N, "embedding": [...]}` line per input text, in
//!   input order, written batch by batch so memory stays flat;
//! - the model defaults to what the library resolves (`MEMBATCH_MODEL`, else the
//!   fetched all-MiniLM-L6-v2, else the hub);
//! - any error is one line on stderr and a non-zero exit code.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;
use membatch::{BertEmbedder, Embedder, ModelSource};

/// Embed texts from stdin (one per line) and write JSON Lines to stdout.
#[derive(Parser, Debug)]
#[command(name = "embed")]
struct Args {
    /// Model directory or Hugging Face repo id [default: $MEMBATCH_MODEL, else all-MiniLM-L6-v2]
    #[arg(long)]
    model: Option<String>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    batch_size: usize,
    /// Compute threads [default: RAYON_NUM_THREADS, else all cores]
    #[arg(long, value_parser = positive)]
    threads: Option<usize>,
    /// Output raw pooled vectors instead of L2-normalised ones.
    #[arg(long)]
    no_normalize: bool,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}

#[derive(serde::Serialize)]
struct Line<'a> {
    index: usize,
    embedding: &'a [f32],
}

fn main() -> ExitCode {
    // A panic is a bug, but the contract still holds: one line, non-zero exit.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("embed: internal error: {}", msg.replace('\n', " "));
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "embed: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
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
        Failure::Message(e.to_string())
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
    let source = match &args.model {
        Some(m) => ModelSource::parse(m),
        None => ModelSource::from_env_or_default(),
    };
    let mut builder = BertEmbedder::builder().source(source);
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    if args.no_normalize {
        builder = builder.normalize(false);
    }
    let embedder = builder.build()?;

    let batch_size = args.batch_size;
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut batch: Vec<String> = Vec::with_capacity(batch_size);
    let mut next_index = 0;
    for (line_no, line) in stdin.split(b'\n').enumerate() {
        let bytes = line.map_err(|e| Failure::Message(format!("cannot read stdin: {e}")))?;
        let mut text = String::from_utf8(bytes).map_err(|_| {
            Failure::Message(format!("line {} of stdin is not valid UTF-8", line_no + 1))
        })?;
        if text.ends_with('\r') {
            text.pop();
        }
        batch.push(text);
        if batch.len() == batch_size {
            next_index = flush(&embedder, &mut batch, next_index, &mut out)?;
        }
    }
    // `split` yields no item after a final newline, so a trailing empty line
    // is never a text, while empty lines in the middle are.
    flush(&embedder, &mut batch, next_index, &mut out)?;
    out.flush().map_err(write_failure)
}

/// Embeds and writes one batch; returns the index of the next text.
fn flush(
    embedder: &BertEmbedder,
    batch: &mut Vec<String>,
    first_index: usize,
    out: &mut impl Write,
) -> Result<usize, Failure> {
    if batch.is_empty() {
        return Ok(first_index);
    }
    let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts)?;
    for (i, v) in vectors.iter().enumerate() {
        let line = Line {
            index: first_index + i,
            embedding: v,
        };
        serde_json::to_writer(&mut *out, &line)
            .map_err(|e| write_failure(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(write_failure)?;
    }
    let n = batch.len();
    batch.clear();
    Ok(first_index + n)
}
