//! `membatch codebase` under faults: the disk fills up while an index is
//! written (root: a small tmpfs), and a run is SIGKILLed halfway. Either
//! way the previous index stays current and queryable, the cache is not
//! corrupted, and the next run completes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use membatch_testkit::tiny::{tiny_model_dir, Tiny};
use serde_json::Value;

fn membatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_membatch"));
    cmd.env_remove("RUST_LOG").env_remove("MEMBATCH_MODEL");
    cmd
}

fn index(model: &Path, dir: &Path, out: &Path, extra: &[&str]) -> Output {
    membatch()
        .args(["codebase", "index"])
        .arg(dir)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(model)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap()
}

fn query(model: &Path, out: &Path, text: &str) -> Vec<Value> {
    let o = membatch()
        .args(["codebase", "query"])
        .arg(out)
        .arg(text)
        .arg("--model")
        .arg(model)
        .args(["--json", "-k", "3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `files` files of `lines` lines each under `root`, tagged `tag`.
fn tree(root: &Path, tag: &str, files: usize, lines: usize) {
    for f in 0..files {
        let body: String = (0..lines)
            .map(|l| format!("{tag} file {f} line {l} the quick brown fox jumps\n"))
            .collect();
        let p = root.join(format!("{tag}/f{f}.txt"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

fn current(out: &Path) -> String {
    std::fs::read_to_string(out.join("CURRENT")).unwrap()
}

#[test]
fn a_run_killed_halfway_leaves_the_old_index_and_the_next_run_recovers() {
    let model = tiny_model_dir(&Tiny::default());
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    tree(src.path(), "first", 3, 20);
    let o = index(model.path(), src.path(), out.path(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = current(out.path());

    // A much bigger tree, embedded in small windows; killed after some of
    // them were committed to the cache.
    tree(src.path(), "second", 400, 200);
    let mut child = membatch()
        .args(["codebase", "index"])
        .arg(src.path())
        .arg("--out")
        .arg(out.path())
        .arg("--model")
        .arg(model.path())
        .args(["--json", "--window", "16"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cache = out.path().join("cache.redb");
    let initial = std::fs::metadata(&cache).map_or(0, |m| m.len());
    let started = Instant::now();
    // Kill once the cache has grown (windows committed), or after 3 s.
    while std::fs::metadata(&cache).map_or(0, |m| m.len()) <= initial
        && started.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    if status.success() {
        eprintln!("the run finished before the kill; the recovery below is still checked");
    }
    // The old index is still the current one and answers.
    if !status.success() {
        assert_eq!(
            current(out.path()),
            before,
            "CURRENT moved without a complete index"
        );
    }
    assert!(!query(model.path(), out.path(), "quick brown fox").is_empty());

    // The next run completes, reusing what the killed one cached.
    let o = index(model.path(), src.path(), out.path(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["files"], 403);
    let chunks = summary["chunks"].as_u64().unwrap();
    assert_eq!(
        summary["embedded"].as_u64().unwrap() + summary["reused"].as_u64().unwrap(),
        chunks
    );
    assert!(summary["reused"].as_u64().unwrap() > 0, "{summary}");
    let hits = query(model.path(), out.path(), "second file 7 line 3");
    assert_eq!(hits.len(), 3);
    // No generation directories are left behind but the current one.
    let gens: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    assert_eq!(gens, vec![current(out.path())]);
}

/// A small tmpfs mounted for the test (root only), unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Self {
        let id = Command::new("id").arg("-u").output().unwrap();
        let uid = String::from_utf8_lossy(&id.stdout).trim().to_string();
        assert_eq!(
            uid, "0",
            "mounting a tmpfs needs root (running as uid {uid})"
        );
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
        Tmpfs { dir }
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Tests that need root; `scripts/test.sh` runs them as root and skips the
/// `as_root` tests by name (saying so) for anyone else.
mod as_root {
    use super::*;

    #[test]
    #[ignore = "needs root to mount a tmpfs: scripts/test.sh runs it as root"]
    fn a_full_disk_keeps_the_old_index_current_and_the_next_run_with_space_completes() {
        let model = tiny_model_dir(&Tiny::default());
        let src = tempfile::tempdir().unwrap();
        let disk = Tmpfs::new("3m");
        let out = disk.dir.path().join("index");
        tree(src.path(), "small", 2, 10);
        let o = index(model.path(), src.path(), &out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let before = current(&out);
        let old_hits = query(model.path(), &out, "small file 1");

        // Far more than 3 MiB of chunks, vectors and cache.
        tree(src.path(), "big", 300, 150);
        let o = index(model.path(), src.path(), &out, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("No space left on device") || stderr.contains("space"),
            "{stderr}"
        );
        assert_eq!(current(&out), before, "the old index is still current");
        assert_eq!(query(model.path(), &out, "small file 1"), old_hits);

        disk.resize("256m");
        let o = index(model.path(), src.path(), &out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["files"], 302);
        assert_eq!(query(model.path(), &out, "big file 12 line 3").len(), 3);
    }
}
