//! The same SQL on Apache Ballista: an in-process cluster (standalone), a
//! client of a remote scheduler, and what `membatch-executor` and
//! `membatch-scheduler` run.
//!
//! Only a function's name travels in Ballista's plans, so every role
//! registers `embed`: executors with the model (and one process-wide pool
//! that every task's runtime and `embed` share), the scheduler and a remote
//! client with a planning stub of the same name, signature and result type
//! ([`EmbedUdf::builder`]`.planning_model(..)`).

use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::ExecutorProcessConfig;
use ballista_scheduler::config::SchedulerConfig;
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::session::session_state;
use crate::udf::EmbedUdf;

/// A Ballista session configuration running `partitions` partitions at a
/// time (in standalone mode, also the in-process executor's task slots).
pub fn config(partitions: usize) -> SessionConfig {
    let partitions = partitions.max(1);
    SessionConfig::new_with_ballista()
        .with_target_partitions(partitions)
        .with_ballista_standalone_parallelism(partitions)
}

/// A Ballista cluster in this process (scheduler and one executor): the
/// executor runs `embed` with the model, its tasks reserving in `pool`,
/// the same pool `embed` was built with.
///
/// # Errors
///
/// Ballista's, starting the scheduler or executor.
pub async fn standalone(
    embed: &EmbedUdf,
    pool: Arc<dyn MemoryPool>,
    partitions: usize,
) -> Result<SessionContext> {
    let mut state = session_state(config(partitions), pool)?;
    // The in-process executor takes its functions from this state...
    state.register_udf(Arc::new(embed.to_udf()))?;
    let ctx = SessionContext::standalone_with_state(state).await?;
    // ...while the client's state is rebuilt without them.
    ctx.register_udf(embed.to_udf());
    Ok(ctx)
}

/// A client of the Ballista scheduler at `url` (`df://host:port`), with a
/// planning `embed`: queries run on the cluster's executors.
///
/// # Errors
///
/// Ballista's, connecting to the scheduler.
pub async fn remote(url: &str, embed: &EmbedUdf, partitions: usize) -> Result<SessionContext> {
    let state = SessionStateBuilder::new()
        .with_config(config(partitions))
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(url, state).await?;
    ctx.register_udf(embed.to_udf());
    Ok(ctx)
}

/// What an executor runs: `embed` with its model among Ballista's default
/// functions, and one pool for every task and `embed` (Ballista's own
/// per-task pools are switched off: `memory_pool_size = Some(0)`).
/// Connection settings (scheduler, ports, work dir, task slots) are the
/// caller's to fill in.
pub fn executor_config(embed: &EmbedUdf, pool: Arc<dyn MemoryPool>) -> ExecutorProcessConfig {
    let mut registry = BallistaFunctionRegistry::default();
    registry
        .scalar_functions
        .insert(embed.to_udf().name().to_string(), Arc::new(embed.to_udf()));
    ExecutorProcessConfig {
        memory_pool_size: Some(0),
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(move |_config: &SessionConfig| {
            RuntimeEnvBuilder::new()
                .with_memory_pool(pool.clone())
                .build_arc()
        })),
        ..ExecutorProcessConfig::default()
    }
}

/// What a scheduler runs: sessions that know `embed` (a planning stub is
/// enough; the scheduler never runs it). Address settings are the caller's.
pub fn scheduler_config(embed: &EmbedUdf) -> SchedulerConfig {
    let embed = embed.clone();
    SchedulerConfig {
        override_session_builder: Some(Arc::new(move |config: SessionConfig| {
            let mut state = SessionStateBuilder::new()
                .with_config(config)
                .with_default_features()
                .build();
            state.register_udf(Arc::new(embed.to_udf()))?;
            Ok(state)
        })),
        ..SchedulerConfig::default()
    }
}
