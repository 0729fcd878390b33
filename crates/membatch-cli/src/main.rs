//! `membatch`: membatch's command-line tools.
//!
//! ```text
//! membatch codebase index <DIR> --out <INDEX_DIR>
//!     [--memory-budget SIZE|PERCENT] [--max-file-size SIZE]
//!     [--chunk-tokens N] [--overlap N] [--json]
//! membatch codebase query <INDEX_DIR> "<text>" [-k N] [--json]
//! ```
//!
//! Every error is one line on stderr (`membatch: ...`) and a non-zero exit
//! code; `--help` describes each command. The model and memory settings
//! also come from the `MEMBATCH_*`/`EMBEDDING_*` variables the library
//! reads (docs/configuration.md).

mod codebase;
mod support;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// membatch: embeddings within a memory limit.
#[derive(Parser, Debug)]
#[command(name = "membatch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Embed a source tree within a memory limit, and search it.
    Codebase(codebase::Args),
}

fn main() -> ExitCode {
    support::one_line_panics("membatch");
    support::init_logging();
    let cli = match support::parse_args::<Cli>("membatch") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Codebase(args) => codebase::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(support::Failure(m)) => {
            eprintln!("membatch: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
