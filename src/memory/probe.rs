//! Reading memory figures: the [`MemoryProbe`] trait and the real
//! [`SystemProbe`].

use std::fmt::Debug;

use super::cgroup::{CgroupMemory, CgroupPaths};
use super::platform::{self, ProcFiles};
use super::reader::FileCache;

/// Memory figures at one moment. Sizes are in bytes.
///
/// Probes build one with [`new`](Self::new) and the `with_` methods:
///
/// ```
/// use membatch::memory::{FigureSource, MemorySnapshot};
///
/// let s = MemorySnapshot::new(8 << 30, 6 << 30).with_process(Some(300 << 20), None);
/// assert_eq!(s.figure_source(), FigureSource::ProcessRss);
/// assert_eq!(s.figure_bytes(), 300 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemorySnapshot {
    /// The process's resident set size; `None` where the OS does not say.
    pub rss_bytes: Option<u64>,
    /// The process's peak resident set size (`VmHWM`) since start or since
    /// the last [`MemoryProbe::reset_peak`]; `None` where the OS does not say.
    pub peak_rss_bytes: Option<u64>,
    /// Physical memory of the machine.
    pub system_total_bytes: u64,
    /// Memory the kernel could hand out without swapping (`MemAvailable`).
    pub system_available_bytes: u64,
    /// The process's memory cgroup, when it is in one.
    pub cgroup: Option<CgroupMemory>,
}

/// Which figure a [`MemorySnapshot`] compares with the budget; see
/// [`MemorySnapshot::figure_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FigureSource {
    /// The cgroup's working set (usage minus inactive page cache): the
    /// process is in a memory cgroup with a limit.
    CgroupWorkingSet,
    /// The process's resident set size.
    ProcessRss,
    /// Memory in use on the whole machine: only where the platform gives no
    /// process figure.
    SystemUsed,
}

impl MemorySnapshot {
    /// A snapshot of a machine with `system_total_bytes` of memory, of which
    /// `system_available_bytes` are available; no process or cgroup figures
    /// yet.
    pub fn new(system_total_bytes: u64, system_available_bytes: u64) -> Self {
        MemorySnapshot {
            rss_bytes: None,
            peak_rss_bytes: None,
            system_total_bytes,
            system_available_bytes,
            cgroup: None,
        }
    }

    /// With the process's resident set size and its peak.
    #[must_use]
    pub fn with_process(mut self, rss_bytes: Option<u64>, peak_rss_bytes: Option<u64>) -> Self {
        self.rss_bytes = rss_bytes;
        self.peak_rss_bytes = peak_rss_bytes;
        self
    }

    /// With the figures of the process's memory cgroup.
    #[must_use]
    pub fn with_cgroup(mut self, cgroup: CgroupMemory) -> Self {
        self.cgroup = Some(cgroup);
        self
    }

    /// The cgroup's limit, when there is one.
    pub fn cgroup_limit_bytes(&self) -> Option<u64> {
        self.cgroup.and_then(|c| c.limit_bytes)
    }

    /// The most memory this process may use: the smaller of physical memory
    /// and the cgroup limit (either alone when the other is unknown; 0
    /// when neither is known).
    pub fn effective_limit_bytes(&self) -> u64 {
        match (self.cgroup_limit_bytes(), self.system_total_bytes) {
            (Some(l), 0) => l,
            (Some(l), total) => l.min(total),
            (None, total) => total,
        }
    }

    /// The figure that gets the process killed, which budgets compare
    /// against: the cgroup's working set when a cgroup limit applies,
    /// otherwise the process's RSS (or, where the OS gives no RSS, the
    /// memory in use system-wide).
    pub fn figure_bytes(&self) -> u64 {
        match self.figure_source() {
            FigureSource::CgroupWorkingSet => self.cgroup.map_or(0, |c| c.working_set_bytes()),
            FigureSource::ProcessRss => self.rss_bytes.unwrap_or(0),
            FigureSource::SystemUsed => self
                .system_total_bytes
                .saturating_sub(self.system_available_bytes),
        }
    }

    /// The memory the process can still get before the kernel must
    /// reclaim it from others or kill: under a cgroup limit, the limit
    /// minus the working set; otherwise the system's available memory.
    pub fn free_bytes(&self) -> u64 {
        match (self.cgroup, self.cgroup_limit_bytes()) {
            (Some(c), Some(limit)) => limit.saturating_sub(c.working_set_bytes()),
            _ => self.system_available_bytes,
        }
    }

    /// Which figure [`figure_bytes`](Self::figure_bytes) is.
    pub fn figure_source(&self) -> FigureSource {
        match (self.cgroup_limit_bytes(), self.rss_bytes) {
            (Some(_), _) => FigureSource::CgroupWorkingSet,
            (None, Some(_)) => FigureSource::ProcessRss,
            (None, None) => FigureSource::SystemUsed,
        }
    }
}

/// A source of [`MemorySnapshot`]s. `Send + Sync` so a budget can be shared
/// between threads, and a trait so that tests can inject a fake.
pub trait MemoryProbe: Send + Sync + Debug {
    /// Reads the figures now. Must be cheap (it runs before every batch)
    /// and must not fail: unknown figures are `None` or zero.
    fn snapshot(&self) -> MemorySnapshot;

    /// Restarts the peak-RSS count, so the next snapshot's peak is the peak
    /// of the work in between. Returns `false` where that is not possible.
    fn reset_peak(&self) -> bool {
        false
    }
}

/// The real probe: the process's own resident memory, the machine's total
/// and available memory, and the cgroup files for the container.
///
/// On Linux every figure comes from `/proc` and the cgroup filesystem; on
/// macOS the process figures come from the Mach task (`task_info`) and the
/// system's from psutil; on Windows both from the Win32 process and system
/// memory calls (see `docs/memory.md`).
#[derive(Debug)]
pub struct SystemProbe {
    cgroup: Option<CgroupPaths>,
    proc: ProcFiles,
    files: FileCache,
}

impl Default for SystemProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemProbe {
    /// Finds the process's cgroup once; later snapshots only read figures.
    pub fn new() -> Self {
        let cgroup = CgroupPaths::discover();
        tracing::debug!(?cgroup, "memory probe initialised");
        Self::with_cgroup(cgroup)
    }

    /// A probe that reads a given cgroup directory (membatch's own tests;
    /// not part of the API).
    #[doc(hidden)]
    pub fn with_cgroup(cgroup: Option<CgroupPaths>) -> Self {
        SystemProbe {
            cgroup,
            proc: ProcFiles::default(),
            files: FileCache::default(),
        }
    }

    /// A probe that reads the process's status (`VmRSS`, `VmHWM`) and the
    /// system's memory (`MemTotal`, `MemAvailable`) from other files than
    /// `/proc/self/status` and `/proc/meminfo` (Linux; a `/proc` mounted
    /// elsewhere, or tests of what happens when they cannot be read; not
    /// part of the API).
    #[doc(hidden)]
    pub fn with_files(
        status: impl Into<std::path::PathBuf>,
        meminfo: impl Into<std::path::PathBuf>,
        cgroup: Option<CgroupPaths>,
    ) -> Self {
        SystemProbe {
            cgroup,
            proc: ProcFiles {
                status: status.into(),
                meminfo: meminfo.into(),
            },
            files: FileCache::default(),
        }
    }

    /// The cgroup directories this probe reads, if any (not part of the
    /// API).
    #[doc(hidden)]
    pub fn cgroup_paths(&self) -> Option<&CgroupPaths> {
        self.cgroup.as_ref()
    }
}

impl MemoryProbe for SystemProbe {
    fn snapshot(&self) -> MemorySnapshot {
        let (total, available) = platform::system_memory(&self.files, &self.proc);
        let (rss, peak) = platform::process_memory(&self.files, &self.proc);
        let snapshot = MemorySnapshot::new(total, available).with_process(rss, peak);
        match self
            .cgroup
            .as_ref()
            .and_then(|c| c.read_with(|p| self.files.read(p)))
        {
            Some(cgroup) => snapshot.with_cgroup(cgroup),
            None => snapshot,
        }
    }

    fn reset_peak(&self) -> bool {
        // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
        cfg!(target_os = "linux") && std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::CgroupVersion;

    fn snap(rss: u64, cgroup: Option<CgroupMemory>) -> MemorySnapshot {
        let s = MemorySnapshot::new(8 << 30, 6 << 30).with_process(Some(rss), Some(rss));
        match cgroup {
            Some(c) => s.with_cgroup(c),
            None => s,
        }
    }

    #[test]
    fn the_figure_is_the_working_set_only_under_a_cgroup_limit() {
        let limited = CgroupMemory {
            version: CgroupVersion::V2,
            limit_bytes: Some(512 << 20),
            usage_bytes: 400 << 20,
            inactive_file_bytes: 150 << 20,
        };
        let s = snap(100 << 20, Some(limited));
        assert_eq!(s.effective_limit_bytes(), 512 << 20);
        assert_eq!(
            s.figure_bytes(),
            250 << 20,
            "page cache does not spend the budget"
        );

        let unlimited = CgroupMemory {
            limit_bytes: None,
            ..limited
        };
        let s = snap(100 << 20, Some(unlimited));
        assert_eq!(s.effective_limit_bytes(), 8 << 30);
        assert_eq!(s.figure_bytes(), 100 << 20, "no limit: process RSS");

        let huge_limit = CgroupMemory {
            limit_bytes: Some(64 << 30),
            ..limited
        };
        assert_eq!(snap(1, Some(huge_limit)).effective_limit_bytes(), 8 << 30);
    }

    #[test]
    fn unreadable_files_read_as_unknown_not_as_a_panic() {
        let probe = SystemProbe::with_files("/nonexistent/status", "/nonexistent/meminfo", None);
        let s = probe.snapshot();
        if cfg!(target_os = "linux") {
            assert_eq!((s.rss_bytes, s.system_total_bytes), (None, 0));
            assert_eq!(s.effective_limit_bytes(), 0, "unknown");
        }
        let limited = CgroupMemory::new(CgroupVersion::V2, Some(256 << 20), 1 << 20, 0);
        let s = MemorySnapshot::new(0, 0).with_cgroup(limited);
        assert_eq!(
            s.effective_limit_bytes(),
            256 << 20,
            "the cgroup's limit alone"
        );
    }

    #[test]
    fn the_figure_falls_back_to_system_usage_only_without_a_process_figure() {
        let limited = CgroupMemory::new(CgroupVersion::V1, Some(512 << 20), 300 << 20, 0);
        let cases = [
            (
                snap(100 << 20, Some(limited)),
                FigureSource::CgroupWorkingSet,
                300 << 20,
            ),
            (snap(100 << 20, None), FigureSource::ProcessRss, 100 << 20),
            (
                MemorySnapshot::new(8 << 30, 6 << 30),
                FigureSource::SystemUsed,
                2 << 30,
            ),
            (
                MemorySnapshot::new(8 << 30, 6 << 30).with_cgroup(limited),
                FigureSource::CgroupWorkingSet,
                300 << 20,
            ),
        ];
        for (s, source, figure) in cases {
            assert_eq!(s.figure_source(), source, "{s:?}");
            assert_eq!(s.figure_bytes(), figure, "{s:?}");
        }
    }

    #[test]
    fn the_real_probe_reads_this_process() {
        let probe = SystemProbe::new();
        let s = probe.snapshot();
        assert!(s.system_total_bytes > 0);
        assert!(s.system_available_bytes <= s.system_total_bytes);
        if cfg!(any(target_os = "linux", target_os = "macos", windows)) {
            let rss = s.rss_bytes.expect("a process figure on this platform");
            assert!(rss > 1 << 20 && rss < s.system_total_bytes);
            assert!(s.peak_rss_bytes.unwrap() >= rss);
            assert_ne!(
                s.figure_source(),
                FigureSource::SystemUsed,
                "a busy machine must not count against this process"
            );
        }
    }
}
