//! Memory that tells the truth inside containers.
//!
//! - [`MemoryProbe`] reads a [`MemorySnapshot`]: process RSS and its peak,
//!   system total and available memory, and the process's memory cgroup
//!   (v1 or v2) with its effective limit, usage and reclaimable page cache.
//!   [`SystemProbe`] is the real one; tests inject fakes.
//! - [`MemoryBudget`] is the memory the work may use ([`MemoryConfig`]: 70%
//!   of the effective limit by default, or an absolute size), compared with
//!   the figure that gets a process killed, and turned into a
//!   [`PressureLevel`] with hysteresis.
//! - [`MemoryGuard`] is the RAII grant for one batch: `acquire` refuses work
//!   that does not fit (after forcing a cleanup), and dropping the guard
//!   records the peak and gives freed memory back to the OS when due.
//!
//! This module has no candle dependency. See `docs/memory.md`.

mod budget;
mod cgroup;
mod config;
mod pressure;
mod probe;
mod reader;
mod reclaim;

pub use budget::{MemoryBudget, MemoryGuard, MemoryMetrics, MemoryReading, WorkReport};
pub use cgroup::{CgroupMemory, CgroupPaths, CgroupVersion};
pub use config::{
    parse_size, MemoryConfig, MemoryConfigBuilder, MemoryLimit, PressureThresholds,
    DEFAULT_PERCENT, ENV_MAX_MEMORY, ENV_MAX_MEMORY_PERCENT,
};
pub use pressure::PressureLevel;
pub use probe::{MemoryProbe, MemorySnapshot, SystemProbe};
pub use reclaim::{trim, AllocatorReclaim, Reclaim};
