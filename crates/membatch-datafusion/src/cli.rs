//! What the three binaries (`membatch-sql`, `membatch-scheduler`,
//! `membatch-executor`) share: logging to stderr, the async runtime, and
//! one-line errors with their exit codes.

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Logs to stderr through `tracing`, filtered by `RUST_LOG`, else by
/// `default_filter` (e.g. `"warn"`).
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Runs `work` on a multi-threaded tokio runtime; an error is printed on
/// one line as `NAME: message` and exits 1.
pub fn run_main<F>(name: &str, work: F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("{name}: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// An error with its causes on one line.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    membatch::ErrorReport::new(e).to_string()
}

/// `--memory-limit`: a size (`400MiB`) or a percentage (`70%`).
///
/// # Errors
///
/// membatch's message for a value it cannot read.
pub fn memory_limit(s: &str) -> Result<membatch::memory::MemoryLimit, String> {
    membatch::memory::MemoryLimit::parse("--memory-limit", s).map_err(|e| e.to_string())
}
