//! What the example binaries share: logging to stderr, one-line errors
//! with the hints only this repository can give, and argument errors.

use std::process::ExitCode;

use clap::Parser;

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default: errors
/// only, so a failing run stays one line), coloured only on a terminal.
pub fn init_logging() {
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
pub fn one_line_panics(name: &'static str) {
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
pub fn parse_args<A: Parser>(name: &str) -> Result<A, ExitCode> {
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

/// A library error as one line, its causes included, with a hint where the
/// library's own message cannot know how this binary is run: how this
/// repository places the default model, and the flag that holds the
/// weights as int8.
#[allow(dead_code)] // not every example reports library errors
pub fn message(e: &membatch::Error) -> String {
    let mut message = e.report().to_string();
    match e {
        // Only a missing model directory carries a hint.
        membatch::Error::ModelFile {
            kind: membatch::ModelFileError::Missing { hint },
            ..
        } if !hint.is_empty() => {
            message.push_str(&format!(
                " (scripts/fetch-model.sh places the default model in {})",
                membatch::source::default_model_dir().display()
            ));
        }
        membatch::Error::ModelTooLarge { precision, .. }
            if *precision == membatch::Precision::F32 =>
        {
            message.push_str(" (here: --precision int8)");
        }
        _ => {}
    }
    message
}
