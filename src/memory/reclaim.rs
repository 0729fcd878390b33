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
