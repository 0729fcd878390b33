//! The process's resident memory and the machine's memory, read the way
//! each platform offers them.
//!
//! - Linux: `/proc/self/status` (`VmRSS`, `VmHWM`) and `/proc/meminfo`,
//!   read directly: psutil's `process` feature cannot share a lockfile with
//!   candle, and one status read (~13 µs here) is cheaper than the statm
//!   plus status reads it would make; psutil's meminfo parsing builds a map
//!   of every field (30 µs a call here against 11 µs), and this runs before
//!   every batch.
//! - macOS: the Mach task's basic info (resident size and its maximum)
//!   through `mach2`, and psutil for the machine.
//! - Windows: `GetProcessMemoryInfo` (working set and its peak) and
//!   `GlobalMemoryStatusEx` through `windows-sys`; psutil does not run there.
//! - Elsewhere: psutil for the machine on other Unix systems, no process
//!   figure, so budgets count memory in use system-wide.

use super::reader::FileCache;

/// The process's resident set size and its peak, when the platform says.
/// Where the Linux figures are read: `/proc/self/status` and
/// `/proc/meminfo` unless a probe says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcFiles {
    pub(crate) status: std::path::PathBuf,
    pub(crate) meminfo: std::path::PathBuf,
}

impl Default for ProcFiles {
    fn default() -> Self {
        ProcFiles {
            status: "/proc/self/status".into(),
            meminfo: "/proc/meminfo".into(),
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) fn process_memory(files: &FileCache, at: &ProcFiles) -> (Option<u64>, Option<u64>) {
    match files.read(&at.status) {
        Some(s) => (
            parse_status_kib(&s, "VmRSS:"),
            parse_status_kib(&s, "VmHWM:"),
        ),
        None => (None, None),
    }
}

/// Total and available memory of the machine.
#[cfg(target_os = "linux")]
pub(crate) fn system_memory(files: &FileCache, at: &ProcFiles) -> (u64, u64) {
    let text = files.read(&at.meminfo).unwrap_or_default();
    let total = parse_status_kib(&text, "MemTotal:");
    let available = parse_status_kib(&text, "MemAvailable:");
    match (total, available) {
        (Some(t), Some(a)) => (t, a),
        _ => {
            tracing::warn!(file = %at.meminfo.display(), "cannot read the system's memory: unknown");
            (0, 0)
        }
    }
}

/// A `Key:   123 kB` line of a `/proc` status file, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(target_os = "macos")]
pub(crate) fn process_memory(_: &FileCache, _: &ProcFiles) -> (Option<u64>, Option<u64>) {
    // The structure and its size from libc, the calls from mach2 (libc's
    // `mach_task_self` is deprecated in favour of mach2's).
    use libc::{mach_task_basic_info, MACH_TASK_BASIC_INFO_COUNT};
    use mach2::kern_return::KERN_SUCCESS;
    use mach2::message::mach_msg_type_number_t;
    use mach2::task::task_info;
    use mach2::task_info::MACH_TASK_BASIC_INFO;
    use mach2::traps::mach_task_self;

    let mut info = std::mem::MaybeUninit::<mach_task_basic_info>::zeroed();
    let mut count: mach_msg_type_number_t = MACH_TASK_BASIC_INFO_COUNT;
    // SAFETY: task_info writes at most `count` words of a
    // mach_task_basic_info into `info`, which is that large; the task port
    // of this process is always valid.
    let status = unsafe {
        task_info(
            mach_task_self(),
            MACH_TASK_BASIC_INFO,
            info.as_mut_ptr().cast(),
            &mut count,
        )
    };
    if status != KERN_SUCCESS {
        return (None, None);
    }
    // SAFETY: task_info succeeded, so it filled the structure (and it was
    // zeroed before, so any field it skipped is 0, not garbage).
    let info = unsafe { info.assume_init() };
    (Some(info.resident_size), Some(info.resident_size_max))
}

#[cfg(windows)]
pub(crate) fn process_memory(_: &FileCache, _: &ProcFiles) -> (Option<u64>, Option<u64>) {
    use windows_sys::Win32::System::ProcessStatus::{
        GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;

    let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    // SAFETY: an all-zero PROCESS_MEMORY_COUNTERS is a valid value.
    let mut counters: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
    counters.cb = size;
    // SAFETY: the pseudo handle of the current process is always valid, and
    // `counters` is a PROCESS_MEMORY_COUNTERS of `size` bytes.
    let ok = unsafe { GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, size) };
    if ok == 0 {
        return (None, None);
    }
    (
        Some(counters.WorkingSetSize as u64),
        Some(counters.PeakWorkingSetSize as u64),
    )
}

#[cfg(windows)]
pub(crate) fn system_memory(_: &FileCache, _: &ProcFiles) -> (u64, u64) {
    use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};

    // SAFETY: an all-zero MEMORYSTATUSEX is a valid value.
    let mut status: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
    status.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
    // SAFETY: `status` is a MEMORYSTATUSEX whose dwLength says so.
    if unsafe { GlobalMemoryStatusEx(&mut status) } == 0 {
        tracing::warn!("GlobalMemoryStatusEx failed: system memory unknown");
        return (0, 0);
    }
    (status.ullTotalPhys, status.ullAvailPhys)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub(crate) fn process_memory(_: &FileCache, _: &ProcFiles) -> (Option<u64>, Option<u64>) {
    (None, None)
}

#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) fn system_memory(_: &FileCache, _: &ProcFiles) -> (u64, u64) {
    match psutil::memory::virtual_memory() {
        Ok(vm) => (vm.total(), vm.available()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read system memory");
            (0, 0)
        }
    }
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn system_memory(_: &FileCache, _: &ProcFiles) -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            parse_status_kib("VmRSS: 99999999999999999999 kB", "VmRSS:"),
            None
        );
    }

    #[test]
    fn this_machine_has_memory_and_this_process_a_figure() {
        let files = FileCache::default();
        let at = ProcFiles::default();
        let (total, available) = system_memory(&files, &at);
        assert!(total > 0 && available <= total, "{total} {available}");
        let (rss, peak) = process_memory(&files, &at);
        if cfg!(any(target_os = "linux", target_os = "macos", windows)) {
            let (rss, peak) = (rss.unwrap(), peak.unwrap());
            assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        }
    }
}
