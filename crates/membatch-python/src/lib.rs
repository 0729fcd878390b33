//! membatch for Python: the `membatch._membatch` extension module under the
//! `membatch` package (python/membatch/).
//!
//! The classes here hold membatch's Rust objects and do the work without
//! the GIL; the package's Python layer adds what sentence-transformers
//! users call (`encode`'s arguments, `similarity`, `aencode`). The
//! exceptions are the package's (`membatch/_errors.py`), raised from here
//! by `errors::to_py`. `docs/python.md` is the user's guide.

mod args;
mod embedder;
mod errors;
mod fork;
mod reranker;
mod service;

use membatch::memory::{CgroupVersion, MemoryBudget};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::config;

/// What membatch sees of this process's memory: the limit (the smaller of
/// physical memory and the cgroup's), usage, the budget and its pressure
/// level. Reads `MEMBATCH_MAX_MEMORY` unless `memory_budget` is given.
#[pyfunction]
#[pyo3(signature = (memory_budget=None))]
fn memory_report<'py>(
    py: Python<'py>,
    memory_budget: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let settings = PyDict::new(py);
    settings.set_item("memory_budget", memory_budget)?;
    let config = config(Some(&settings))?;
    let reading = MemoryBudget::new(config.memory().clone()).read();
    let s = reading.snapshot;
    let d = PyDict::new(py);
    d.set_item("rss_bytes", s.rss_bytes)?;
    d.set_item("peak_rss_bytes", s.peak_rss_bytes)?;
    d.set_item("system_total_bytes", s.system_total_bytes)?;
    d.set_item("system_available_bytes", s.system_available_bytes)?;
    d.set_item(
        "cgroup_version",
        s.cgroup.map(|c| match c.version {
            CgroupVersion::V1 => 1,
            _ => 2,
        }),
    )?;
    d.set_item("cgroup_limit_bytes", s.cgroup_limit_bytes())?;
    d.set_item("cgroup_usage_bytes", s.cgroup.map(|c| c.usage_bytes))?;
    d.set_item("effective_limit_bytes", s.effective_limit_bytes())?;
    d.set_item("budget_bytes", reading.budget_bytes)?;
    d.set_item("figure_bytes", reading.figure_bytes)?;
    d.set_item("headroom_bytes", reading.headroom_bytes())?;
    d.set_item("level", reading.level.as_str())?;
    Ok(d)
}

/// The settings table: (name, environment variable, default) of each
/// setting the constructors' `**settings` take.
#[pyfunction]
fn _settings() -> Vec<(&'static str, &'static str, &'static str)> {
    membatch::settings::all()
        .iter()
        .map(|s| (s.name(), s.env(), s.default_text()))
        .collect()
}

/// Raises the exception membatch's Rust error `variant` becomes (see
/// `errors::example`); `None` for a name it does not know.
#[pyfunction]
fn _raise_example(variant: &str) -> PyResult<()> {
    match errors::example(variant) {
        Some(e) => Err(errors::to_py(e)),
        None => Ok(()),
    }
}

#[pymodule]
fn _membatch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Unlike membatch's tools, the module leaves malloc's arenas as they
    // are: the process is the user's (docs/python.md, "Memory").
    // numpy's C API now, while importing: rust-numpy loads it on the first
    // array, running Python code (numpy's version check) that a pending
    // Ctrl-C would interrupt, and it panics when that load fails. Loaded
    // here, an interrupt is an ordinary KeyboardInterrupt of the import.
    m.py().import("numpy")?;
    let _ = numpy::PyArray1::<f32>::zeros(m.py(), 0, false);
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<embedder::Embedder>()?;
    m.add_class::<embedder::Batches>()?;
    m.add_class::<service::Service>()?;
    m.add_class::<service::Pending>()?;
    m.add_class::<reranker::Reranker>()?;
    m.add_function(wrap_pyfunction!(memory_report, m)?)?;
    m.add_function(wrap_pyfunction!(_settings, m)?)?;
    m.add_function(wrap_pyfunction!(_raise_example, m)?)?;
    m.add_function(wrap_pyfunction!(service::_next_callback, m)?)?;
    Ok(())
}
