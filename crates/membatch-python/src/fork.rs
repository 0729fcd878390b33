//! `os.fork()` after a model loaded.
//!
//! A forked child has only the thread that forked: the compute pool's
//! threads and a service's worker stay behind in the parent, and work
//! handed to them would wait forever. Every object remembers the process
//! that made it and refuses, with [`ForkError`](../python/membatch/_errors.py),
//! to run in another one; a new object made in the child has threads of its
//! own and works (the package never uses rayon's global pool, which could
//! not be made again: `args::config` always asks for a dedicated pool).

use pyo3::PyResult;

use crate::errors::raise;

/// The process an object's threads live in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner(u32);

impl Owner {
    pub(crate) fn here() -> Self {
        Owner(std::process::id())
    }

    /// Refuses to run `what` in a process other than the one it was made in.
    pub(crate) fn check(self, what: &str) -> PyResult<()> {
        let pid = std::process::id();
        if pid == self.0 {
            return Ok(());
        }
        Err(raise(
            "ForkError",
            format!(
                "this membatch.{what} was made in process {} and this is process {pid}, forked \
                 from it: its compute threads did not come along. Make the {what} in the \
                 process that uses it (gunicorn: without --preload, or in a post_fork hook; \
                 multiprocessing: in the worker, or with the \"spawn\" start method)",
                self.0
            ),
        ))
    }
}

/// A value whose threads live in the process that made it: dropped there,
/// leaked in a forked child. (Dropping it in the child would take locks
/// and signal threads that stayed behind in the parent, at the child's
/// exit: a gunicorn `--preload` worker's.)
pub(crate) struct Owned<T> {
    value: std::mem::ManuallyDrop<T>,
    owner: Owner,
}

impl<T> Owned<T> {
    pub(crate) fn new(value: T) -> Self {
        Owned {
            value: std::mem::ManuallyDrop::new(value),
            owner: Owner::here(),
        }
    }

    pub(crate) fn owner(&self) -> Owner {
        self.owner
    }
}

impl<T> std::ops::Deref for Owned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if std::process::id() == self.owner.0 {
            // SAFETY: dropped once, here; never used after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.value) }
        }
    }
}
