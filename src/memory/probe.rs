//! Reading memory figures: the [`MemoryProbe`] trait and the real
//! [`SystemProbe`].

use std::fmt::Debug;

use super::cgroup::{CgroupMemory, CgroupPaths};
use super::reader::FileCache;

/// Memory figures at one moment. Sizes are in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl MemorySnapshot {
    /// The cgroup's limit, when there is one.
    pub fn cgroup_limit_bytes(&self) -> Option<u64> {
        self.cgroup.and_then(|c| c.limit_bytes)
    }

    /// The most memory this process may use: the smaller of physical memory
    /// and the cgroup limit.
    pub fn effective_limit_bytes(&self) -> u64 {
        match self.cgroup_limit_bytes() {
            Some(l) => l.min(self.system_total_bytes),
            None => self.system_total_bytes,
        }
    }

    /// The figure that gets the process killed, which budgets compare
    /// against: the cgroup's working set when a cgroup limit applies,
    /// otherwise the process's RSS (or, where the OS gives no RSS, the
    /// memory in use system-wide).
    pub fn figure_bytes(&self) -> u64 {
        match (self.cgroup, self.cgroup_limit_bytes()) {
            (Some(c), Some(_)) => c.working_set_bytes(),
            _ => self.rss_bytes.unwrap_or_else(|| {
                self.system_total_bytes
                    .saturating_sub(self.system_available_bytes)
            }),
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

/// The real probe: `/proc/self/status` for the process, `/proc/meminfo`
/// (psutil off Linux) for the system, the cgroup files for the container.
#[derive(Debug)]
pub struct SystemProbe {
    cgroup: Option<CgroupPaths>,
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

    /// A probe that reads a given cgroup directory (tests and unusual mounts).
    pub fn with_cgroup(cgroup: Option<CgroupPaths>) -> Self {
        SystemProbe {
            cgroup,
            files: FileCache::default(),
        }
    }

    /// The cgroup directories this probe reads, if any.
    pub fn cgroup_paths(&self) -> Option<&CgroupPaths> {
        self.cgroup.as_ref()
    }
}

impl MemoryProbe for SystemProbe {
    fn snapshot(&self) -> MemorySnapshot {
        let read = |p: &str| self.files.read(std::path::Path::new(p));
        let (system_total_bytes, system_available_bytes) = system_memory(read("/proc/meminfo"));
        let (rss_bytes, peak_rss_bytes) = process_memory(read("/proc/self/status"));
        MemorySnapshot {
            rss_bytes,
            peak_rss_bytes,
            system_total_bytes,
            system_available_bytes,
            cgroup: self
                .cgroup
                .as_ref()
                .and_then(|c| c.read_with(|p| self.files.read(p))),
        }
    }

    fn reset_peak(&self) -> bool {
        // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
        cfg!(target_os = "linux") && std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}

/// RSS (`VmRSS`) and peak RSS (`VmHWM`) from one read of `/proc/self/status`.
///
/// psutil's `process` feature would do this but cannot share a lockfile with
/// candle; and one status read (~13 µs here) is cheaper than statm plus status.
fn process_memory(status: Option<String>) -> (Option<u64>, Option<u64>) {
    match status {
        Some(s) => (
            parse_status_kib(&s, "VmRSS:"),
            parse_status_kib(&s, "VmHWM:"),
        ),
        None => (None, None),
    }
}

/// Total and available system memory.
///
/// On Linux `/proc/meminfo` is read directly: psutil reads the same file but
/// builds a map of every field, 30 µs a call here against 11 µs for the
/// read, and this runs before every batch. psutil serves other systems.
fn system_memory(meminfo: Option<String>) -> (u64, u64) {
    if let Some(text) = meminfo {
        let total = parse_status_kib(&text, "MemTotal:");
        let available = parse_status_kib(&text, "MemAvailable:");
        if let (Some(t), Some(a)) = (total, available) {
            return (t, a);
        }
    }
    match psutil::memory::virtual_memory() {
        Ok(vm) => (vm.total(), vm.available()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read system memory");
            (0, 0)
        }
    }
}

/// A `Key:   123 kB` line of /proc/self/status, in bytes.
pub(crate) fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::CgroupVersion;

    #[test]
    fn status_and_meminfo_lines_parse() {
        let meminfo = "MemTotal:       24683656 kB\nMemFree:        21000000 kB\nMemAvailable:   23900000 kB\n";
        assert_eq!(
            parse_status_kib(meminfo, "MemTotal:"),
            Some(24_683_656 * 1024)
        );
        assert_eq!(
            parse_status_kib(meminfo, "MemAvailable:"),
            Some(23_900_000 * 1024)
        );
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmHWM:\t    1536 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(1536 * 1024));
        assert_eq!(parse_status_kib("VmHWM: lots kB", "VmHWM:"), None);
        assert_eq!(parse_status_kib("", "VmHWM:"), None);
    }

    fn snap(rss: u64, cgroup: Option<CgroupMemory>) -> MemorySnapshot {
        MemorySnapshot {
            rss_bytes: Some(rss),
            peak_rss_bytes: Some(rss),
            system_total_bytes: 8 << 30,
            system_available_bytes: 6 << 30,
            cgroup,
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
    fn the_real_probe_reads_this_process() {
        let probe = SystemProbe::new();
        let s = probe.snapshot();
        assert!(s.system_total_bytes > 0);
        assert!(s.system_available_bytes <= s.system_total_bytes);
        if cfg!(target_os = "linux") {
            let rss = s.rss_bytes.expect("rss on linux");
            assert!(rss > 1 << 20 && rss < s.system_total_bytes);
            assert!(s.peak_rss_bytes.unwrap() >= rss);
        }
    }
}
