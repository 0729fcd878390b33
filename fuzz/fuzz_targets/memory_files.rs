//! Arbitrary contents for the files memory readings come from
//! (`/proc/self/cgroup`, `mountinfo`, `memory.stat`, a limit file,
//! `/proc/self/status`, `/proc/meminfo`), split at 0xFF bytes: "unknown",
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xFF).map(String::from_utf8_lossy);
    let mut next = || parts.next().unwrap_or_default().into_owned();
    let (proc_cgroup, mountinfo, stat, limit, status) = (next(), next(), next(), next(), next());
    membatch::fuzzing::memory_files(&proc_cgroup, &mountinfo, &stat, &limit, &status);
});
