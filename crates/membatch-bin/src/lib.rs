//! What membatch's command-line programs share (`membatch`,
//! `membatch-server`, `membatch-sql`, `membatch-scheduler`,
//! `membatch-executor`, and the library's examples): the flags of the
//! library's [settings table](membatch::settings), logging (`RUST_LOG`,
//! `--log-format json`), the one-line panic hook, argument errors, size
//! parsing and exit codes. Not a public API: it changes with the programs.
//!
//! The contract every program keeps: `--help` and `--version` print to
//! stdout and exit 0; an invalid argument is one stderr line
//! (`NAME: problem (see --help)`) and exit code 2; any other failure is one
//! stderr line (`NAME: message`) and exit code 1; a panic is one stderr line
//! too (`NAME: internal error: ...`).

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod flags;

use std::io::IsTerminal;
use std::process::ExitCode;

pub use flags::{AllGroups, EmbeddingGroups, Groups, MemoryGroup, Settings};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line (time, level, target, fields, spans).
    Json,
}

/// `--log-format`, for a program's arguments (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log lines as text or as one JSON object per line (the filter is RUST_LOG)
    #[arg(long, global = true, value_enum, env = "MEMBATCH_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG`, else by
/// `default_filter` (e.g. `"error"`). The settings table's notes (an
/// older variable name in use) are shown at `warn` whatever the default.
pub fn init_logging(default_filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| format!("{default_filter},membatch::settings=warn").into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Reports a panic as one stderr line (`NAME: internal error: ...`): a
/// panic is a bug, but the one-line error contract still holds.
pub fn one_line_panics(name: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("{name}: internal error: {}", one_line(&msg));
    }));
}

/// Parses the arguments: `--help` and `--version` print and exit 0; an
/// invalid argument is one stderr line (`NAME: problem (see --help)`) and
/// exit code 2.
///
/// # Errors
///
/// The exit code to return when the program should stop.
pub fn parse_args<A: clap::Parser>(name: &str) -> Result<A, ExitCode> {
    match A::try_parse() {
        Ok(a) => Ok(a),
        Err(e) if !e.use_stderr() => {
            print!("{e}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "{name}: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            Err(ExitCode::from(2))
        }
    }
}

/// A failure to report on one line: a message, built from any error with
/// its causes.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::error::Error + 'static> From<E> for Failure {
    /// The error with its causes, and the flag that helps where membatch's
    /// own message cannot know how the program is run.
    fn from(e: E) -> Self {
        let mut message = membatch::ErrorReport::new(&e).to_string();
        match (&e as &dyn std::error::Error).downcast_ref::<membatch::Error>() {
            // The default model's place, empty: the repository's script
            // fills it.
            Some(membatch::Error::ModelFile {
                path,
                kind: membatch::ModelFileError::Missing { .. },
            }) if *path == membatch::default_model_dir() => {
                message
                    .push_str(" (in a membatch checkout, scripts/fetch-model.sh places it there)");
            }
            Some(membatch::Error::ModelTooLarge { precision, .. }) => {
                message.push_str(if *precision == membatch::Precision::F32 {
                    " (here: --memory-budget, or --precision int8)"
                } else {
                    " (here: --memory-budget)"
                });
            }
            _ => {}
        }
        Failure(message)
    }
}

/// A failure with this message.
pub fn fail(message: impl Into<String>) -> Failure {
    Failure(message.into())
}

/// The exit code of a program's result: 0, or 1 with the failure on one
/// stderr line (`NAME: message`).
pub fn exit(name: &str, result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(m)) => {
            eprintln!("{name}: {}", one_line(&m));
            ExitCode::FAILURE
        }
    }
}

/// What every program does before its work: the one-line panic hook, the
/// arguments ([`parse_args`]), then logging in the format `log` reads from
/// them.
///
/// # Errors
///
/// The exit code to return when the program should stop (`--help`, an
/// invalid argument).
pub fn start<A: clap::Parser>(
    name: &'static str,
    default_filter: &str,
    log: impl FnOnce(&A) -> LogFormat,
) -> Result<A, ExitCode> {
    one_line_panics(name);
    let args = parse_args::<A>(name)?;
    init_logging(default_filter, log(&args));
    Ok(args)
}

/// A whole async program: [`start`], then `work` on [`run_async`].
#[cfg(feature = "tokio")]
pub fn main_async<A, F>(
    name: &'static str,
    default_filter: &str,
    log: impl FnOnce(&A) -> LogFormat,
    work: impl FnOnce(A) -> F,
) -> ExitCode
where
    A: clap::Parser,
    F: std::future::Future<Output = Result<(), Failure>>,
{
    match start::<A>(name, default_filter, log) {
        Ok(args) => run_async(name, work(args)),
        Err(code) => code,
    }
}

/// Runs `work` on a multi-threaded tokio runtime, then as [`exit`].
#[cfg(feature = "tokio")]
pub fn run_async<F>(name: &str, work: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => exit(name, runtime.block_on(work)),
        Err(e) => exit(
            name,
            Err(fail(format!("cannot start the async runtime: {e}"))),
        ),
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// A size flag (`8MiB`, `512M`, bytes), for clap's `value_parser`.
///
/// # Errors
///
/// What the value is not.
pub fn size(s: &str) -> Result<u64, String> {
    match membatch::memory::MemoryLimit::parse("size", s) {
        Ok(membatch::memory::MemoryLimit::Bytes(n)) => Ok(n),
        Ok(_) => Err("expected a size such as 8MiB, not a percentage".into()),
        Err(e) => Err(reason(e)),
    }
}

/// A whole number of at least 1, for clap's `value_parser`.
///
/// # Errors
///
/// What the value is not.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}

/// The reason of a configuration error (clap names the flag and value).
pub(crate) fn reason(e: membatch::Error) -> String {
    match e {
        membatch::Error::InvalidConfig { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_say_what_they_are_not() {
        assert_eq!(size("8MiB").unwrap(), 8 << 20);
        assert!(size("50%").unwrap_err().contains("not a percentage"));
        assert!(size("lots").unwrap_err().contains("expected a size"));
        assert_eq!(positive(" 3 ").unwrap(), 3);
        assert_eq!(positive("0").unwrap_err(), "must be at least 1");
        assert_eq!(positive("x").unwrap_err(), "not a whole number");
    }

    #[test]
    fn a_failure_is_the_error_with_its_causes_and_a_hint() {
        let e = membatch::Error::ModelTooLarge {
            needed: 3,
            available: 1,
            budget: 2,
            precision: membatch::Precision::F32,
        };
        let Failure(m) = Failure::from(e);
        assert!(
            m.ends_with("(here: --memory-budget, or --precision int8)"),
            "{m}"
        );
    }
}
