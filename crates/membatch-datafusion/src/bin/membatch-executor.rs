//! `membatch-executor`: an Apache Ballista executor that runs `embed` with
//! the model, every task and `embed` reserving in one memory pool of the
//! process.
//!
//! ```text
//! membatch-executor --scheduler 127.0.0.1:50050 --port 50051 --grpc-port 50052 \
//!     --memory-budget 400MiB --model /models/all-MiniLM-L6-v2
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use datafusion::execution::memory_pool::MemoryPool;
use membatch::MemoryBudget;
use membatch_bin::{fail, Failure, LogArgs, Settings};
use membatch_datafusion::{ballista, models, session, EmbedUdf, ModelFlags, ModelSpec};

/// A Ballista executor with membatch's embed.
#[derive(Parser, Debug)]
#[command(
    name = "membatch-executor",
    version,
    after_help = "--memory-budget (or --memory-limit) is the memory for the tasks and the model together: one pool."
)]
struct Args {
    /// The scheduler, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:50050")]
    scheduler: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The Arrow Flight port (shuffle data).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// The gRPC port (tasks).
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once. They share the model's threads (--threads), so
    /// more slots overlap the rest of a query with the model but do not
    /// speed the model up, and hold more batches in memory [default: 1]
    #[arg(long)]
    task_slots: Option<usize>,
    /// A model for embed, [NAME=]SOURCE; repeatable, the same as the
    /// scheduler's and clients' [default: $MEMBATCH_MODEL, else all-MiniLM-L6-v2]
    #[arg(long = "model", value_name = "[NAME=]SOURCE")]
    models: Vec<ModelSpec>,
    /// Where shuffle files go [default: a temporary directory]
    #[arg(long)]
    work_dir: Option<String>,
    /// Print what embed did and the pool's peaks to stderr on shutdown.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    settings: Settings<ModelFlags>,
}

fn main() -> ExitCode {
    membatch_bin::main_async(
        "membatch-executor",
        "warn",
        |a: &Args| a.log.log_format,
        run,
    )
}

async fn run(args: Args) -> Result<(), Failure> {
    let (scheduler_host, scheduler_port) = args
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            fail(format!(
                "--scheduler {:?}: expected HOST:PORT",
                args.scheduler
            ))
        })?;
    let config = args.settings.builder()?.build()?;
    let budget = MemoryBudget::new(config.memory().clone());
    let pool_bytes = budget.read().budget_bytes;
    if pool_bytes == 0 {
        return Err(membatch::Error::MemoryUnknown.into());
    }
    let pool = session::shared_pool(usize::try_from(pool_bytes).unwrap_or(usize::MAX));
    let shared: Arc<dyn MemoryPool> = pool.clone();
    let builder = EmbedUdf::builder()
        .pool(shared.clone())
        .budget(budget.clone())
        .batch(*config.batch());
    let embed = models::add_models(builder, &args.models, &config, Some(&budget))?.build()?;
    let mut process = ballista::executor_config(&embed, shared);
    process.scheduler_host = scheduler_host;
    process.scheduler_port = scheduler_port;
    process.bind_host = args.bind_host;
    process.port = args.port;
    process.grpc_port = args.grpc_port;
    process.vcores = args.task_slots.unwrap_or(1);
    process.work_dir = args.work_dir;
    tracing::info!(
        pool = %bytesize::ByteSize(pool_bytes),
        task_slots = process.vcores,
        models = ?embed.models(),
        "membatch executor starting"
    );
    let result =
        ballista_executor::executor_process::start_executor_process(Arc::new(process)).await;
    if args.stats {
        let m = embed.metrics();
        let peaks = pool
            .peaks()
            .iter()
            .map(|(n, b)| format!("\"{n}\":{b}"))
            .collect::<Vec<_>>()
            .join(",");
        eprintln!(
            "{{\"texts\":{},\"tokens\":{},\"batches\":{},\"shrinks\":{},\"busy_seconds\":{:.3},\"peak_rss_bytes\":{},\"pool_bytes\":{},\"pool_peak_bytes\":{},\"pool_peaks\":{{{peaks}}}}}",
            m.texts,
            m.tokens,
            m.batches,
            m.shrinks,
            m.busy.as_secs_f64(),
            m.peak_rss_bytes,
            pool_bytes,
            pool.peak_total(),
        );
    }
    Ok(result?)
}
