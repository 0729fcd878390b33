//! `membatch`: membatch's command-line tools.
//!
//! ```text
//! membatch embed [--input PATH [--field NAME]] [--output PATH]
//!     [--format jsonl|npy|safetensors] [--prompt-name NAME] [--dimensions N]
//!     [--precision f32|int8] [--memory-budget SIZE|PERCENT] [--threads N] [--model DIR|REPO]
//! membatch codebase index <DIR> --out <INDEX_DIR>
//!     [--memory-budget SIZE|PERCENT] [--max-file-size SIZE]
//!     [--chunk-tokens N] [--overlap N] [--json]
//! membatch codebase query <INDEX_DIR> "<text>" [-k N] [--json]
//! ```
//!
//! Every error is one line on stderr (`membatch: ...`) and a non-zero exit
//! code; `--help` describes each command. The library's settings are flags
//! (`--memory-budget`, `--threads`, `--model`, ...) over the `MEMBATCH_*`
//! variables (docs/configuration.md).

mod codebase;
mod embed;
mod matrix;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use membatch_bin::LogArgs;

/// membatch: embeddings within a memory limit.
#[derive(Parser, Debug)]
#[command(name = "membatch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Embed texts (stdin or a file) to JSON Lines, .npy or .safetensors, within a memory limit.
    Embed(embed::Args),
    /// Embed a source tree within a memory limit, and search it.
    Codebase(codebase::Args),
}

fn main() -> ExitCode {
    // One malloc heap, so what a batch or an unload frees goes back to the
    // OS (docs/memory.md).
    membatch::memory::single_malloc_arena();
    let cli = match membatch_bin::start::<Cli>("membatch", "error", |c| c.log.log_format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Embed(args) => embed::run(&args),
        Command::Codebase(args) => codebase::run(&args),
    };
    membatch_bin::exit("membatch", result)
}
