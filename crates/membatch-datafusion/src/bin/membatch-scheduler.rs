//! `membatch-scheduler`: an Apache Ballista scheduler whose sessions know
//! `embed` (to plan with; executors run it). It reads each model's
//! configuration for the dimension, never its weights.
//!
//! ```text
//! membatch-scheduler --bind-host 127.0.0.1 --port 50050 --model /models/all-MiniLM-L6-v2
//! ```

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use clap::Parser;
use membatch::Config;
use membatch_datafusion::{ballista, models, EmbedUdf, ModelSpec};

/// A Ballista scheduler that plans membatch's embed.
#[derive(Parser, Debug)]
#[command(name = "membatch-scheduler", version)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The port to listen on.
    #[arg(long, default_value_t = 50050)]
    port: u16,
    /// A model for embed, [NAME=]SOURCE; repeatable, the same as the
    /// executors' [default: $MEMBATCH_MODEL, else all-MiniLM-L6-v2]
    #[arg(long = "model", value_name = "[NAME=]SOURCE")]
    models: Vec<ModelSpec>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("membatch-scheduler: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("membatch-scheduler: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn report(e: &(dyn std::error::Error + 'static)) -> String {
    membatch::ErrorReport::new(e).to_string()
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config::from_env().map_err(|e| report(&e))?;
    let embed = models::add_models(EmbedUdf::builder(), &args.models, &config, false)
        .map_err(|e| report(&e))?
        .build()
        .map_err(|e| report(&e))?;
    let addr: SocketAddr = format!("{}:{}", args.bind_host, args.port)
        .parse()
        .map_err(|e| format!("--bind-host/--port: {e}"))?;
    let mut scheduler = ballista::scheduler_config(&embed);
    scheduler.bind_host = args.bind_host.clone();
    scheduler.bind_port = args.port;
    scheduler.external_host = args.bind_host;
    let cluster = BallistaCluster::new_from_config(&scheduler)
        .await
        .map_err(|e| report(&e))?;
    tracing::info!(%addr, models = ?embed.models(), "membatch scheduler starting");
    ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(scheduler))
        .await
        .map_err(|e| report(&e))
}
