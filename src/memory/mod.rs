//! Memory that tells the truth inside containers.
//!
//! - [`MemoryProbe`] reads a [`MemorySnapshot`]: process RSS and its peak,
//!   system total and available memory, and the process's memory cgroup
//!   (v1 or v2) with its effective limit, usage and reclaimable page cache.
//!   [`SystemProbe`] is the real one; tests inject fakes.
//! - [`MemoryBudget`] is the memory the work may use ([`MemoryConfig`]: 70%
//!   of the effective limit by default, or an absolute size), compared with
//!   the figure that gets a process killed, and turned into a
//!   [`PressureLevel`](crate::PressureLevel) with hysteresis.
//! - [`MemoryGuard`] is the RAII grant for one batch: `acquire` refuses work
//!   that does not fit (after forcing a cleanup), and dropping the guard
//!   records the peak and gives freed memory back to the OS when due.
//!
//! This module has no candle dependency. See `docs/memory.md`.

mod budget;
mod cgroup;
mod config;
mod load;
mod platform;
mod probe;
mod reader;
mod reclaim;

pub use budget::{MemoryBudget, MemoryGuard, MemoryMetrics, MemoryReading, SharedPool, WorkReport};
pub use cgroup::{CgroupMemory, CgroupVersion};
// Where this process's cgroup is, for membatch's own tests that make a
// child cgroup: not part of the API.
#[doc(hidden)]
pub use cgroup::CgroupPaths;
#[cfg(any(fuzzing, test))]
pub(crate) use config::parse_size;
pub use config::{MemoryConfig, MemoryConfigBuilder, MemoryLimit};
pub use load::LoadEstimate;
pub use probe::{FigureSource, MemoryProbe, MemorySnapshot, SystemProbe};
#[cfg(feature = "candle")]
pub(crate) use reclaim::forget_file_cache;
pub(crate) use reclaim::trim;
pub use reclaim::{single_malloc_arena, AllocatorReclaim, Reclaim};

/// Every parser of memory files on `text`s of a fuzzer's choosing (see
/// `crate::fuzzing`).
#[cfg(any(fuzzing, test))]
pub(crate) fn parse_any(proc_cgroup: &str, mountinfo: &str, stat: &str, limit: &str, status: &str) {
    let _ = cgroup::parse_proc_cgroup(proc_cgroup);
    let _ = cgroup::parse_mountinfo(mountinfo);
    let _ = cgroup::locate(proc_cgroup, mountinfo, |_| true);
    let _ = cgroup::parse_stat_field(stat, "inactive_file");
    let _ = cgroup::parse_stat_field(stat, "hierarchical_memory_limit");
    let _ = cgroup::parse_limit(limit);
    for key in ["VmRSS:", "VmHWM:", "MemTotal:", "MemAvailable:"] {
        let _ = platform::parse_status_kib(status, key);
    }
}
