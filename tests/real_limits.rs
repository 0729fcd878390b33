//! Behaviour under a real memory cgroup limit. Needs root (to create a child
//! memory cgroup); run with `cargo test --features real-limit-tests --test
//! real_limits`, as scripts/test.sh does when it runs as root (CI does).
//! Without root every test here fails with the reason, never passes silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use membatch::memory::{CgroupPaths, CgroupVersion};

const MIB: u64 = 1 << 20;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tests/real_limits.rs needs root to create a memory cgroup (running as uid {euid}); \
         run it as root, as CI does"
    );
}

/// A child memory cgroup with a limit, removed on drop.
struct TempCgroup {
    dir: PathBuf,
}

impl TempCgroup {
    fn new(name: &str, limit_bytes: u64) -> Self {
        require_root();
        let ours = CgroupPaths::discover()
            .expect("this machine has no memory cgroup hierarchy to make a child in");
        let dir = match ours.version {
            // v1: a child of our own cgroup.
            CgroupVersion::V1 => ours
                .leaf
                .join(format!("membatch-{name}-{}", std::process::id())),
            // v2: processes may only live in leaves, so make a sibling tree at
            // the mount root with the memory controller enabled.
            CgroupVersion::V2 => {
                let _ = std::fs::write(ours.mount.join("cgroup.subtree_control"), "+memory");
                ours.mount
                    .join(format!("membatch-{name}-{}", std::process::id()))
            }
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let limit_file = match ours.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        std::fs::write(dir.join(limit_file), limit_bytes.to_string()).unwrap();
        if ours.version == CgroupVersion::V1 {
            // No swap either, so the limit is the whole story.
            let _ = std::fs::write(
                dir.join("memory.memsw.limit_in_bytes"),
                limit_bytes.to_string(),
            );
        }
        TempCgroup { dir }
    }

    /// Runs `program` inside the cgroup: a shell moves itself in, then execs.
    fn run(&self, program: &Path, envs: &[(&str, &str)]) -> Output {
        let procs = self.dir.join("cgroup.procs");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("echo $$ > '{}' && exec \"$0\"", procs.display()))
            .arg(program)
            .env_remove("EMBEDDING_MAX_MEMORY")
            .env_remove("EMBEDDING_MAX_MEMORY_PERCENT");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        // The children have exited; an empty cgroup can be removed.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = deps.parent().unwrap().join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} not built: run through `cargo test`",
        bin.display()
    );
    bin
}

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "memory_report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("memory_report prints JSON")
}

#[test]
fn a_child_in_a_300_mib_cgroup_sees_300_mib_and_budgets_70_percent() {
    let cg = TempCgroup::new("limit", 300 * MIB);
    let r = report(&cg.run(&example("memory_report"), &[]));
    assert_eq!(r["cgroup_limit_bytes"], 300 * MIB, "{r}");
    assert_eq!(r["effective_limit_bytes"], 300 * MIB, "{r}");
    assert_eq!(r["budget_bytes"], 300 * MIB * 70 / 100, "{r}");
    let usage = r["cgroup_usage_bytes"]
        .as_u64()
        .expect("usage inside a cgroup");
    assert!(usage > 0 && usage < 300 * MIB, "{r}");
    assert_eq!(r["level"], "normal", "{r}");
}

#[test]
fn the_environment_sets_the_budget_inside_the_cgroup() {
    let cg = TempCgroup::new("env", 300 * MIB);
    let bin = example("memory_report");
    let r = report(&cg.run(&bin, &[("EMBEDDING_MAX_MEMORY", "100MiB")]));
    assert_eq!(r["budget_bytes"], 100 * MIB, "{r}");
    let r = report(&cg.run(&bin, &[("EMBEDDING_MAX_MEMORY_PERCENT", "50")]));
    assert_eq!(r["budget_bytes"], 150 * MIB, "{r}");
    let r = report(&cg.run(&bin, &[("EMBEDDING_MAX_MEMORY", "1TiB")]));
    assert_eq!(
        r["budget_bytes"],
        300 * MIB,
        "an absolute budget never exceeds the limit: {r}"
    );
}
