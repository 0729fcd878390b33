//! `membatch-executor`: an Apache Ballista executor that runs `embed` with
//! the model, every task and `embed` reserving in one memory pool of the
//! process.
//!
//! ```text
//! membatch-executor --scheduler 127.0.0.1:50050 --port 50051 --grpc-port 50052 \
//!     --memory-limit 400MiB --model /models/all-MiniLM-L6-v2
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use datafusion::execution::memory_pool::MemoryPool;
use membatch::memory::MemoryLimit;
use membatch::{Config, MemoryBudget};
use membatch_datafusion::cli;
use membatch_datafusion::{ballista, models, session, EmbedUdf, ModelSpec};

/// A Ballista executor with membatch's embed.
#[derive(Parser, Debug)]
#[command(name = "membatch-executor", version)]
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
    /// Memory for the tasks and the model together: a size or a percentage
    /// of the container's or machine's memory [default: $EMBEDDING_MAX_MEMORY, else 70%]
    #[arg(long, value_parser = cli::memory_limit)]
    memory_limit: Option<MemoryLimit>,
    /// A model for embed, [NAME=]SOURCE; repeatable, the same as the
    /// scheduler's and clients' [default: $MEMBATCH_MODEL, else all-MiniLM-L6-v2]
    #[arg(long = "model", value_name = "[NAME=]SOURCE")]
    models: Vec<ModelSpec>,
    /// The model's compute threads [default: $EMBEDDING_THREADS, else all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Where shuffle files go [default: a temporary directory]
    #[arg(long)]
    work_dir: Option<String>,
    /// Print what embed did and the pool's peaks to stderr on shutdown.
    #[arg(long)]
    stats: bool,
}

fn main() -> ExitCode {
    cli::init_logging("warn");
    let args = Args::parse();
    cli::run_main("membatch-executor", run(args))
}

async fn run(args: Args) -> Result<(), String> {
    let (scheduler_host, scheduler_port) = args
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("--scheduler {:?}: expected HOST:PORT", args.scheduler))?;
    let mut config = Config::from_env()
        .map_err(|e| cli::report(&e))?
        .into_builder();
    if let Some(limit) = args.memory_limit {
        config = config.memory_limit(limit);
    }
    if let Some(t) = args.threads {
        config = config.threads(t);
    }
    let config = config.build().map_err(|e| cli::report(&e))?;
    let budget = MemoryBudget::new(config.memory().clone());
    let pool_bytes = budget.read().budget_bytes;
    if pool_bytes == 0 {
        return Err(cli::report(&membatch::Error::MemoryUnknown));
    }
    let pool = session::shared_pool(usize::try_from(pool_bytes).unwrap_or(usize::MAX));
    let shared: Arc<dyn MemoryPool> = pool.clone();
    let builder = EmbedUdf::builder()
        .pool(shared.clone())
        .budget(budget)
        .batch(*config.batch());
    let embed = models::add_models(builder, &args.models, &config, true)
        .map_err(|e| cli::report(&e))?
        .build()
        .map_err(|e| cli::report(&e))?;
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
    result.map_err(|e| cli::report(&e))
}
