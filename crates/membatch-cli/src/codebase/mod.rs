//! `membatch codebase`: embed a whole source tree within a memory limit,
//! incrementally, and search it.
//!
//! `index` walks `DIR` honouring `.gitignore`, splits every file into chunks
//! that fit the model in tokens (both from [`membatch_corpus`]), looks
//! each window of chunks up in the cache ([`cache`], a key → vector store),
//! embeds the misses through `BatchEmbedder` within the memory budget and
//! stores them, and streams every chunk's row to a new index generation
//! ([`writer`]) that replaces the old one atomically when complete
//! ([`index`], the loop). `query` scores every row of the current
//! generation against a question ([`query`]).
//!
//! `INDEX_DIR` holds:
//! Chunks are embedded behind the model's document prompt and a query
//! behind its query prompt, when the model defines them (`--prompt-name`,
//! `--query-prompt-name`).
//!
//! - `cache.redb`: blake3(model id, prompt, chunk text) → vector, committed after
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

mod cache;
mod codec;
mod index;
mod query;
mod writer;

use std::path::PathBuf;

use clap::Subcommand;
use membatch::{BertEmbedder, Config, Embedder, ModelSource, Prompt};

use membatch_bin::{fail, positive, EmbeddingGroups, Failure, Settings};

/// Chunks embedded, written and committed to the cache at a time.
const WINDOW: usize = 512;

/// `membatch codebase`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The model's prompt before a query [default: its `query` prompt, else none]
    /// (documents get --prompt-name, else its `document` prompt, else its `passage`
    /// prompt, else none)
    #[arg(long, global = true, value_name = "NAME")]
    query_prompt_name: Option<String>,
    #[command(flatten)]
    settings: Settings<EmbeddingGroups>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Index the files under DIR into INDEX_DIR.
    Index(index::IndexArgs),
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

/// Runs one `codebase` subcommand.
pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    match &args.command {
        Command::Index(index) => index::index(args, index),
        Command::Query { index, text, k } => query::query(args, index, text, *k),
    }
}

/// The settings both subcommands use: the environment, then the flags.
fn model_config(args: &Args) -> Result<Config, Failure> {
    let builder = args.settings.builder()?;
    let config = builder.clone().build()?;
    let source = config
        .model()
        .source
        .clone()
        .unwrap_or_else(ModelSource::default_model);
    Ok(builder.source(source).build()?)
}

/// An id for the model as it runs: a blake3 hash of its files and the
/// settings in force. Vectors from another model, other weights behind the
/// same path or other settings are never reused; the same model reached by
/// another path is.
fn model_id(config: &Config, embedder: &BertEmbedder) -> Result<String, Failure> {
    let source = config
        .model()
        .source
        .clone()
        .unwrap_or_else(ModelSource::default_model);
    let files = source.resolve()?;
    let mut h = blake3::Hasher::new();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        let path = files.required(name)?;
        let mut file =
            std::fs::File::open(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        std::io::copy(&mut file, &mut h).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    }
    Ok(format!(
        "{} {:?} blake3:{}",
        source_name(&source),
        embedder.settings(),
        &h.finalize().to_hex()[..16]
    ))
}

/// The prompt chunks are embedded behind: `--prompt-name` (or
/// `MEMBATCH_PROMPT_NAME`), else the model's prompt named `document`, else
/// `passage`, else none.
fn document_prompt(config: &Config, embedder: &dyn Embedder) -> Prompt {
    match &config.model().prompt_name {
        Some(name) => Prompt::Named(name.clone()),
        None => first_prompt(embedder, &["document", "passage"]),
    }
}

/// The prompt a query is embedded behind: `--query-prompt-name`, else the
/// model's prompt named `query`, else none.
fn query_prompt(args: &Args, embedder: &dyn Embedder) -> Prompt {
    match &args.query_prompt_name {
        Some(name) => Prompt::Named(name.clone()),
        None => first_prompt(embedder, &["query"]),
    }
}

/// The first of `names` the model defines as a prompt, else none.
fn first_prompt(embedder: &dyn Embedder, names: &[&str]) -> Prompt {
    let defined = embedder.prompt_names();
    names
        .iter()
        .find(|n| defined.iter().any(|d| d == *n))
        .map_or(Prompt::Off, |n| Prompt::Named((*n).to_string()))
}

/// The prompt's name for the index's records (`None`: no prompt).
fn prompt_label(prompt: &Prompt) -> Option<String> {
    match prompt {
        Prompt::Named(name) => Some(name.clone()),
        _ => None,
    }
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
