//! Sessions whose query and `embed` share one memory pool.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::corpus::{ReadChunks, ReadTextFiles};
use crate::pool::RecordingPool;
use crate::udf::EmbedUdf;

/// Consumers named in a refusal's message.
const TOP_CONSUMERS: usize = 5;

/// The pool a session shares between its operators and `embed`: a greedy
/// pool of `bytes` (first come, first served: model activations cannot
/// spill, so a fair share that shrinks as operators arrive would only
/// refuse them later), whose refusals name the largest consumers, with
/// every consumer's peak recorded.
pub fn shared_pool(bytes: usize) -> Arc<RecordingPool> {
    let top = NonZeroUsize::new(TOP_CONSUMERS).expect("not zero");
    Arc::new(RecordingPool::new(Arc::new(TrackConsumersPool::new(
        GreedyMemoryPool::new(bytes),
        top,
    ))))
}

/// A session state whose runtime reserves in `pool`.
///
/// # Errors
///
/// DataFusion's, building the runtime.
pub fn session_state(
    config: SessionConfig,
    pool: Arc<dyn MemoryPool>,
) -> Result<datafusion::execution::SessionState> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .build_arc()?;
    Ok(SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build())
}

/// Registers `embed` on `ctx`, and `read_text_files` with it; with
/// `chunks`, `read_chunks` too.
pub fn register(ctx: &SessionContext, embed: &EmbedUdf, chunks: Option<ReadChunks>) {
    ctx.register_udf(embed.to_udf());
    ctx.register_udtf("read_text_files", Arc::new(ReadTextFiles));
    if let Some(chunks) = chunks {
        ctx.register_udtf("read_chunks", Arc::new(chunks));
    }
}

/// A single-process session: `embed` (and the table functions) over a
/// runtime that reserves in `pool`, `partitions` partitions at a time.
///
/// # Errors
///
/// DataFusion's, building the runtime.
pub fn single_node(
    embed: &EmbedUdf,
    chunks: Option<ReadChunks>,
    pool: Arc<dyn MemoryPool>,
    partitions: usize,
) -> Result<SessionContext> {
    let config = SessionConfig::new().with_target_partitions(partitions.max(1));
    let ctx = SessionContext::new_with_state(session_state(config, pool)?);
    register(&ctx, embed, chunks);
    Ok(ctx)
}
