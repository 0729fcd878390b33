//! What every command shares: logging to stderr, one-line errors and
//! panics, argument errors.

use std::process::ExitCode;

use clap::Parser;

/// A one-line failure for stderr.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl<E: std::error::Error + 'static> From<E> for Failure {
    /// The error with its causes, and a hint where membatch's own message
    /// cannot know how this tool was installed.
    fn from(e: E) -> Self {
        let mut message = membatch::ErrorReport::new(&e).to_string();
        // Only a missing model directory carries a hint.
        let missing_model = matches!(
            (&e as &dyn std::error::Error).downcast_ref::<membatch::Error>(),
            Some(membatch::Error::ModelFile {
                kind: membatch::ModelFileError::Missing { hint },
                ..
            }) if !hint.is_empty()
        );
        if missing_model {
            message.push_str(&format!(
                " (in a membatch checkout, scripts/fetch-model.sh places the default model in {})",
                membatch::source::default_model_dir().display()
            ));
        }
        Failure(message)
    }
}

/// A failure with this message.
pub(crate) fn fail(msg: impl Into<String>) -> Failure {
    Failure(msg.into())
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default: errors
/// only, so a failing run stays one line), coloured only on a terminal.
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Reports a panic as one stderr line (`<name>: internal error: ...`): a
/// panic is a bug, but the one-line error contract still holds.
pub(crate) fn one_line_panics(name: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("{name}: internal error: {}", msg.replace('\n', " "));
    }));
}

/// Parses the arguments; `--help` and `--version` print and exit 0, an
/// invalid argument is one stderr line (`<name>: <problem> (see --help)`)
/// and exit code 2.
pub(crate) fn parse_args<A: Parser>(name: &str) -> Result<A, ExitCode> {
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

/// A whole number of at least 1.
pub(crate) fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}
