//! `membatch-sql`: SQL with `embed` over CSV, JSONL, parquet and
//! directories of text files, inside one memory limit shared by the query
//! and the model.
//!
//! ```text
//! membatch-sql --table docs=docs.parquet \
//!     -e "COPY (SELECT id, embed(text) AS v FROM docs) TO 'out/' STORED AS PARQUET"
//! membatch-sql -e "SELECT path, chunk, embed(chunk) FROM read_chunks('src', '*.rs')"
//! membatch-sql --ballista standalone --table docs=docs.parquet -e "..."
//! membatch-sql --ballista df://127.0.0.1:50050 --table docs=docs.parquet -e "..."
//! ```
//!
//! Every error is one line on stderr (`membatch-sql: ...`) and exit code 1
//! (2 for invalid arguments).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use membatch::{Config, MemoryBudget};
use membatch_bin::{fail, positive, Failure, LogArgs, Settings};
use membatch_datafusion::{
    ballista, session, EmbedUdf, ModelFlags, ModelSpec, ReadChunks, ReadTextFiles, RecordingPool,
};

/// SQL with `embed(text [, model])` inside a memory limit.
#[derive(Parser, Debug)]
#[command(
    name = "membatch-sql",
    version,
    after_help = "--memory-budget (or --memory-limit) is the memory for the query and the model together: one pool."
)]
struct Args {
    /// A table, NAME=PATH: a .csv, .jsonl (.ndjson, .json) or .parquet file,
    /// a directory of such files, or a directory of text files read as
    /// (path, content). Repeatable.
    #[arg(long = "table", value_name = "NAME=PATH", value_parser = table_spec)]
    tables: Vec<(String, PathBuf)>,
    /// A model for embed: a directory or Hugging Face repo id, optionally
    /// NAME=SOURCE (called as embed(text, 'NAME')); the first is the
    /// default. Repeatable [default: $MEMBATCH_MODEL, else all-MiniLM-L6-v2]
    #[arg(long = "model", value_name = "[NAME=]SOURCE")]
    models: Vec<ModelSpec>,
    /// Partitions the query runs at once. In one process they share the
    /// model's threads, so more partitions speed up the rest of the query,
    /// not the model, and hold more batches in memory at once; on a cluster
    /// (df://) give the executors' total task slots [default: 1]
    #[arg(long, value_parser = positive)]
    partitions: Option<usize>,
    /// Run on Apache Ballista: `standalone` (an in-process cluster) or a
    /// scheduler's address, df://HOST:PORT.
    #[arg(long, value_name = "standalone|df://HOST:PORT")]
    ballista: Option<String>,
    /// SQL to run, in order (repeatable); without it, statements are read
    /// from standard input.
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    sql: Vec<String>,
    /// Print what embed did and the memory pool's peaks to stderr at the end.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    settings: Settings<ModelFlags>,
}

fn table_spec(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("{s:?}: expected NAME=PATH")),
    }
}

/// Where the query runs.
enum Mode {
    SingleNode,
    Standalone,
    Remote(String),
}

impl Mode {
    fn parse(arg: Option<&str>) -> Result<Mode, Failure> {
        match arg {
            None => Ok(Mode::SingleNode),
            Some("standalone") => Ok(Mode::Standalone),
            Some(url) if url.starts_with("df://") => Ok(Mode::Remote(url.to_string())),
            Some(other) => Err(fail(format!(
                "--ballista {other:?}: expected standalone or df://HOST:PORT"
            ))),
        }
    }

    /// Runs on Ballista (standalone or remote).
    fn is_ballista(&self) -> bool {
        !matches!(self, Mode::SingleNode)
    }
}

/// What runs the statements, and what reports on them.
struct Session {
    ctx: SessionContext,
    embed: EmbedUdf,
    pool: Option<Arc<RecordingPool>>,
    pool_bytes: u64,
    /// Runs on a remote cluster: embed only plans here.
    remote: bool,
}

fn main() -> ExitCode {
    membatch_bin::main_async("membatch-sql", "error", |a: &Args| a.log.log_format, run)
}

async fn run(args: Args) -> Result<(), Failure> {
    let mode = Mode::parse(args.ballista.as_deref())?;
    let config = args.settings.builder()?.build()?;
    let partitions = args.partitions.unwrap_or(1);
    let statements = statements(&args.sql)?;
    // Every table is checked before a cluster starts, so a refusal is the
    // only line on stderr.
    let mut tables = Vec::with_capacity(args.tables.len());
    for (name, path) in &args.tables {
        let format = format_of(path)?;
        if format.is_none() && mode.is_ballista() {
            return Err(fail(format!(
                "{}: a directory of text files is read by this process, and Ballista cannot \
                 send that table to its executors; write it to parquet first \
                 (membatch-sql -e \"COPY (SELECT * FROM read_text_files('{}')) TO \
                 'corpus.parquet' STORED AS PARQUET\") and use that",
                path.display(),
                path.display()
            )));
        }
        tables.push((name, path, format));
    }
    let session = session(&args, &mode, &config, partitions).await?;
    for (name, path, format) in tables {
        register_table(&session, name, path, format).await?;
    }
    let started = Instant::now();
    for sql in &statements {
        execute(&session, sql).await?;
    }
    if args.stats {
        print_stats(&session, started.elapsed());
    }
    Ok(())
}

/// The statements to run: the -e arguments, else standard input.
fn statements(sql: &[String]) -> Result<Vec<String>, Failure> {
    if !sql.is_empty() {
        return Ok(sql.to_vec());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| fail(format!("cannot read SQL from standard input: {e}")))?;
    let statements = split_statements(&text)?;
    if statements.is_empty() {
        return Err(fail(
            "no SQL given: pass -e \"SQL\" or statements on standard input",
        ));
    }
    Ok(statements)
}

/// Splits SQL text at the semicolons outside strings, quoted names and
/// comments, keeping each statement's own text. (A parsed statement
/// printed back is not always the SQL it came from: `COPY ... TO 'dir/'`
/// loses its quotes.)
fn split_statements(text: &str) -> Result<Vec<String>, Failure> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize()
        .map_err(|e| fail(format!("SQL on standard input: {e}")))?;
    let mut statements = Vec::new();
    let mut current = String::new();
    for token in tokens {
        if token == Token::SemiColon {
            statements.push(std::mem::take(&mut current));
        } else {
            current.push_str(&token.to_string());
        }
    }
    statements.push(current);
    statements.retain(|s| !s.trim().is_empty());
    Ok(statements)
}

async fn session(
    args: &Args,
    mode: &Mode,
    config: &Config,
    partitions: usize,
) -> Result<Session, Failure> {
    let specs = if args.models.is_empty() {
        vec![ModelSpec::default_for(config)]
    } else {
        args.models.clone()
    };
    if let Mode::Remote(url) = mode {
        // The cluster's executors embed; this process only plans.
        let mut builder = EmbedUdf::builder();
        for spec in &specs {
            builder = builder.planning_model(spec.name.clone(), spec.dimension(config)?);
        }
        let embed = builder.build()?;
        let ctx = ballista::remote(url, &embed, partitions).await?;
        return Ok(Session {
            ctx,
            embed,
            pool: None,
            pool_bytes: 0,
            remote: true,
        });
    }
    let budget = MemoryBudget::new(config.memory().clone());
    let pool_bytes = budget.read().budget_bytes;
    if pool_bytes == 0 {
        return Err(membatch::Error::MemoryUnknown.into());
    }
    let pool = session::shared_pool(usize::try_from(pool_bytes).unwrap_or(usize::MAX));
    let shared: Arc<dyn MemoryPool> = pool.clone();
    let mut builder = EmbedUdf::builder()
        .pool(shared.clone())
        .budget(budget.clone())
        .batch(*config.batch());
    let mut chunks = None;
    for spec in &specs {
        let model = spec.load(config, &budget)?;
        if chunks.is_none() {
            chunks = Some(ReadChunks::new(
                model.token_counter()?,
                membatch::Embedder::info(&model).max_seq_length,
            ));
        }
        builder = builder.model(spec.name.clone(), model);
    }
    let embed = builder.build()?;
    let ctx = match mode {
        Mode::Standalone => {
            let ctx = ballista::standalone(&embed, shared, partitions).await?;
            session::register(&ctx, &embed, chunks);
            ctx
        }
        _ => session::single_node(&embed, chunks, shared, partitions)?,
    };
    Ok(Session {
        ctx,
        embed,
        pool: Some(pool),
        pool_bytes,
        remote: false,
    })
}

/// The format of a table path: by extension, or by what a directory holds.
fn format_of(path: &Path) -> Result<Option<&'static str>, Failure> {
    let by_ext = |p: &Path| -> Option<&'static str> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some("csv"),
            "jsonl" | "ndjson" | "json" => Some("json"),
            "parquet" => Some("parquet"),
            _ => None,
        }
    };
    if path.is_file() {
        return by_ext(path).map(Some).ok_or_else(|| {
            fail(format!(
                "{}: a table file must be .csv, .jsonl, .ndjson, .json or .parquet",
                path.display()
            ))
        });
    }
    if !path.is_dir() {
        return Err(fail(format!(
            "{}: no such file or directory",
            path.display()
        )));
    }
    // A directory of data files of one format is that table; anything else
    // is a directory of text files.
    let mut formats = std::collections::BTreeSet::new();
    let mut others = false;
    for entry in std::fs::read_dir(path).map_err(|e| fail(format!("{}: {e}", path.display())))? {
        let entry = entry.map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let p = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') || p.is_dir() {
            continue;
        }
        match by_ext(&p) {
            Some(f) => {
                formats.insert(f);
            }
            None => others = true,
        }
    }
    Ok(match (formats.len(), others) {
        (1, false) => formats.pop_first(),
        _ => None,
    })
}

/// Registers a table whose format `format_of` found (`None`: text files).
async fn register_table(
    session: &Session,
    name: &str,
    path: &Path,
    format: Option<&str>,
) -> Result<(), Failure> {
    let ctx = &session.ctx;
    let location = path
        .to_str()
        .ok_or_else(|| fail(format!("{}: not a UTF-8 path", path.display())))?;
    match format {
        Some("csv") => {
            ctx.register_csv(name, location, CsvReadOptions::new())
                .await?
        }
        Some("json") => {
            let ext = if path.is_file() {
                path.extension()
                    .and_then(|e| e.to_str())
                    .map_or(".json".to_string(), |e| format!(".{e}"))
            } else {
                first_extension(path).unwrap_or_else(|| ".json".into())
            };
            ctx.register_json(
                name,
                location,
                JsonReadOptions::default().file_extension(&ext),
            )
            .await?
        }
        Some(_) => {
            ctx.register_parquet(name, location, ParquetReadOptions::default())
                .await?
        }
        None => {
            let table = ReadTextFiles::table(location)?;
            ctx.register_table(name, table)?;
        }
    }
    Ok(())
}

/// The extension of a directory's first data file (`.jsonl`).
fn first_extension(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.path().extension()?.to_str().map(|x| format!(".{x}")))
        .next()
}

async fn execute(session: &Session, sql: &str) -> Result<(), Failure> {
    let bar = progress(session);
    let df = session.ctx.sql(sql).await?;
    let mut stream = df.execute_stream().await?;
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows();
        let table = pretty_format_batches(&[batch])?;
        bar.suspend(|| println!("{table}"));
    }
    bar.finish_and_clear();
    if rows == 0 {
        println!("0 rows");
    }
    Ok(())
}

/// A spinner on stderr (a terminal only) with what embed has done and the
/// pool's reservations, updated while a statement runs.
fn progress(session: &Session) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let embed = session.embed.clone();
    let pool = session.pool.clone();
    let remote = session.remote;
    let started = Instant::now();
    let ticker = bar.clone();
    tokio::spawn(async move {
        while !ticker.is_finished() {
            let msg = if remote {
                "running on the cluster".to_string()
            } else {
                let m = embed.metrics();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                format!(
                    "{} texts embedded · {:.0} tokens/s · batch {} · pool {}",
                    m.texts,
                    m.tokens as f64 / secs,
                    m.batch_size,
                    bytesize::ByteSize(pool.as_ref().map_or(0, |p| p.reserved() as u64)),
                )
            };
            ticker.set_message(msg);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    bar
}

fn print_stats(session: &Session, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    if session.remote {
        eprintln!("ran in {secs:.1} s on the cluster (the executors report what embed did)");
        return;
    }
    let m = session.embed.metrics();
    eprintln!(
        "embedded {} texts ({} tokens) in {:.1} s: {:.0} tokens/s, {} batches, {} shrinks, peak RSS {}",
        m.texts,
        m.tokens,
        secs,
        m.tokens as f64 / secs,
        m.batches,
        m.shrinks,
        bytesize::ByteSize(m.peak_rss_bytes),
    );
    if let Some(pool) = &session.pool {
        let peaks = pool
            .peaks()
            .iter()
            .map(|(name, bytes)| format!("{name} {}", bytesize::ByteSize(*bytes as u64)))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "memory pool: peak {} of {} ({peaks})",
            bytesize::ByteSize(pool.peak_total() as u64),
            bytesize::ByteSize(session.pool_bytes),
        );
    }
}
