//! Giving freed memory back to the operating system.
//!
//! Freeing a tensor returns its memory to the allocator, not necessarily to
//! the OS: glibc keeps freed heap memory in its arenas, so RSS (and the cgroup
//! charge) stays high after a large batch and creeps up over a long run.
//! `malloc_trim(0)` asks glibc to return every free page it can.

use std::fmt::Debug;

/// Something that can hand freed memory back to the OS.
pub trait Reclaim: Send + Sync + Debug {
    /// Returns freed memory to the OS, as far as the allocator can.
    fn reclaim(&self);
}

/// The process allocator: `malloc_trim(0)` with glibc, nothing elsewhere
/// (musl and the system allocators of other platforms return large blocks
/// to the OS on free already).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocatorReclaim;

impl Reclaim for AllocatorReclaim {
    fn reclaim(&self) {
        trim();
    }
}

impl AllocatorReclaim {
    /// Returns freed heap memory to the OS now; `true` when the allocator
    /// released anything (always `false` where there is nothing to call).
    pub fn trim(&self) -> bool {
        trim()
    }
}

/// Returns free heap memory to the OS. Returns whether anything was released
/// (always `false` where there is no trim to call).
pub(crate) fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own free lists; it is
        // thread-safe and has no preconditions.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Makes every thread allocate from one malloc heap (glibc's
/// `mallopt(M_ARENA_MAX, 1)`), unless the environment sets the arena count
/// (`MALLOC_ARENA_MAX`, or `arena_max` in `GLIBC_TUNABLES`), which decides
/// instead. Call it first thing in `main`, before
/// other threads start. Returns whether the setting was made (never
/// outside glibc).
///
/// glibc gives threads heaps of their own; a model's word-table rows, read
/// by the compute threads, then stay spread over several heaps whose
/// partly used pages `malloc_trim` cannot give back, so an unloaded model
/// left 2–6 MiB behind and a reload had less room than the first load.
/// With one heap the unload gives it all back: the smallest limit in
/// which the server loads all-MiniLM-L6-v2 in int8, unloads and reloads
/// fell from 51 to 43 MiB, the library's, with `membatch embed` as fast
/// (paired runs: wall time ×1.015, within their spread; `docs/memory.md`).
/// membatch's tools call it; a program of its own may too.
pub fn single_malloc_arena() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_user = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if set_by_user {
            return false;
        }
        // SAFETY: mallopt only sets a glibc tunable; M_ARENA_MAX is one it
        // knows, and it may be called at any time (arenas made before it
        // stay).
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Drops the page cache the kernel keeps for `path` (a file read once and
/// no longer mapped, such as model weights copied into the process's own
/// buffers): inside a memory cgroup those cached pages are charged to the
/// container, and recently read ones count in its working set, so they
/// would crowd out the work the budget is for. Best effort: returns
/// whether the kernel was asked (Linux only).
#[cfg(feature = "candle")]
pub(crate) fn forget_file_cache(path: &std::path::Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let Ok(file) = std::fs::File::open(path) else {
            return false;
        };
        // SAFETY: posix_fadvise only reads the descriptor, which `file`
        // keeps open for the call; offset 0 and length 0 mean the whole
        // file.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}
