//! `membatch-scheduler`: an Apache Ballista scheduler whose sessions know
//! `embed` (to plan with; executors run it). It reads each model's
//! configuration for the dimension, never its weights.
//!
//! ```text
//! membatch-scheduler --bind-host 127.0.0.1 --port 50050 --model /models/all-MiniLM-L6-v2
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use clap::Parser;
use membatch::Config;
use membatch_bin::{fail, Failure, LogArgs};
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
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    membatch_bin::main_async(
        "membatch-scheduler",
        "warn",
        |a: &Args| a.log.log_format,
        run,
    )
}

async fn run(args: Args) -> Result<(), Failure> {
    let config = Config::from_env()?;
    let embed = models::add_models(EmbedUdf::builder(), &args.models, &config, None)?.build()?;
    let addr: SocketAddr = format!("{}:{}", args.bind_host, args.port)
        .parse()
        .map_err(|e| fail(format!("--bind-host/--port: {e}")))?;
    let mut scheduler = ballista::scheduler_config(&embed);
    scheduler.bind_host = args.bind_host.clone();
    scheduler.bind_port = args.port;
    scheduler.external_host = args.bind_host;
    let cluster = BallistaCluster::new_from_config(&scheduler).await?;
    tracing::info!(%addr, models = ?embed.models(), "membatch scheduler starting");
    Ok(
        ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(scheduler))
            .await?,
    )
}
