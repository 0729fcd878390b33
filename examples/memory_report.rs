//! `memory_report`: one JSON object describing the memory membatch sees.
//!
//! ```text
//! cargo run --example memory_report
//! ```
//!
//! Keys (other tools rely on them): `rss_bytes`, `peak_rss_bytes`,
//! `system_total_bytes`, `system_available_bytes`, `cgroup_limit_bytes` (null
//! when none), `cgroup_usage_bytes` (null when none), `effective_limit_bytes`,
//! `budget_bytes`, `level`; also `cgroup_version`, `cgroup_working_set_bytes`,
//! `figure_bytes` and `headroom_bytes`. Honours `MEMBATCH_MAX_MEMORY` (and
//! the older `EMBEDDING_MAX_MEMORY`, `EMBEDDING_MAX_MEMORY_PERCENT`) like the
//! library.

use std::process::ExitCode;

use membatch::memory::MemoryBudget;
use serde_json::json;

fn main() -> ExitCode {
    let budget = match membatch::Config::from_env() {
        Ok(c) => MemoryBudget::new(c.memory().clone()),
        Err(e) => {
            eprintln!("memory_report: {e}");
            return ExitCode::from(2);
        }
    };
    let r = budget.read();
    let s = r.snapshot;
    let report = json!({
        "rss_bytes": s.rss_bytes,
        "peak_rss_bytes": s.peak_rss_bytes,
        "system_total_bytes": s.system_total_bytes,
        "system_available_bytes": s.system_available_bytes,
        "cgroup_version": s.cgroup.map(|c| c.version),
        "cgroup_limit_bytes": s.cgroup_limit_bytes(),
        "cgroup_usage_bytes": s.cgroup.map(|c| c.usage_bytes),
        "cgroup_working_set_bytes": s.cgroup.map(|c| c.working_set_bytes()),
        "effective_limit_bytes": s.effective_limit_bytes(),
        "budget_bytes": r.budget_bytes,
        "figure_bytes": r.figure_bytes,
        "headroom_bytes": r.headroom_bytes(),
        "level": r.level,
    });
    println!("{report}");
    ExitCode::SUCCESS
}
