//! membatch inside Apache DataFusion, and distributed with Apache Ballista:
//! `embed(text [, model])` as a SQL function whose forward passes reserve
//! their memory in the query's own memory pool.
//!
//! - [`EmbedUdf`]: the scalar function. Each call hands a record batch's
//!   texts to membatch's `BatchEmbedder`, which sorts them by length and
//!   sizes batches from the memory budget; every forward pass holds a
//!   reservation in DataFusion's pool next to the query's sorts and joins,
//!   and a refusal shrinks the batch before it becomes
//!   `ResourcesExhausted` ([`pool`]).
//! - [`ReadTextFiles`], [`ReadChunks`]: a directory of text files as a
//!   table, whole or cut into chunks that fit the model ([`corpus`]).
//! - [`session`]: single-process sessions over one shared pool;
//!   [`ballista`]: the same in an in-process Ballista cluster, as a client
//!   of a remote one, and what `membatch-executor` / `membatch-scheduler`
//!   run.
//!
//! The binaries `membatch-sql`, `membatch-executor` and
//! `membatch-scheduler` put these together; docs/scale-out.md walks
//! through single node, standalone and a loopback cluster.
//!
//! Threads: DataFusion runs `target_partitions` partitions at once and
//! each `embed` call runs the model's own compute threads, so keep
//! model threads × partitions at about the number of cores (one partition
//! with every core is the fastest on one machine; see docs/scale-out.md).

pub mod ballista;
pub mod corpus;
pub mod models;
pub mod pool;
pub mod session;
pub mod udf;

pub use corpus::{ReadChunks, ReadTextFiles};
pub use models::{ModelFlags, ModelSpec};
pub use pool::{PoolShare, RecordingPool};
pub use udf::{EmbedUdf, EmbedUdfBuilder};
