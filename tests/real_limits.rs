//! Behaviour under a real memory cgroup limit. Needs root (to create a child
//! memory cgroup), so every test here is `#[ignore]`d in a plain
//! `cargo test` (listed as ignored, with the reason); run them with
//! `cargo test --workspace --test real_limits -- --ignored` (the whole
//! workspace selected, so nothing is rebuilt), as scripts/test.sh does when
//! it runs as root (CI does). Without root each fails with the reason,
//! never passes silently. Alone in its test binary: its tests run the
//! examples in cgroups of their own.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use membatch::memory::{CgroupPaths, CgroupVersion};
use membatch_testkit::process::feed;

mod common;

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
        self.run_with(program, &[], b"", envs)
    }

    /// As [`run`](Self::run), with arguments and standard input.
    fn run_with(
        &self,
        program: &Path,
        args: &[&str],
        stdin: &[u8],
        envs: &[(&str, &str)],
    ) -> Output {
        let procs = self.dir.join("cgroup.procs");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "echo $$ > '{}' && exec \"$0\" \"$@\"",
                procs.display()
            ))
            .arg(program)
            .args(args);
        isolate(&mut cmd, envs);
        feed(cmd, stdin)
    }

    /// Starts `program` inside the cgroup without waiting for it.
    fn spawn(&self, program: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Child {
        let procs = self.dir.join("cgroup.procs");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "echo $$ > '{}' && exec \"$0\" \"$@\"",
                procs.display()
            ))
            .arg(program)
            .args(args);
        isolate(&mut cmd, envs);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Sets the cgroup's limit (v1 or v2); `false` when the kernel refuses
    /// (v1 answers EBUSY while usage does not fit under the new limit).
    fn set_limit(&self, bytes: u64) -> bool {
        let file = if self.dir.join("memory.limit_in_bytes").exists() {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        std::fs::write(self.dir.join(file), bytes.to_string()).is_ok()
    }

    /// A v1 or v2 counter file of the cgroup, as text.
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// How many processes the kernel OOM-killed in this cgroup.
    fn oom_kills(&self) -> u64 {
        ["memory.oom_control", "memory.events"]
            .iter()
            .flat_map(|f| {
                self.file(f)
                    .lines()
                    .filter_map(|l| {
                        l.strip_prefix("oom_kill ")
                            .map(|n| n.trim().parse::<u64>().unwrap_or(0))
                    })
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// The most memory the cgroup ever held: `memory.max_usage_in_bytes`
    /// (v1) or `memory.peak` (v2, Linux 5.19+). Fails the test when the
    /// kernel reports neither.
    fn max_usage(&self) -> u64 {
        ["memory.max_usage_in_bytes", "memory.peak"]
            .iter()
            .find_map(|f| self.file(f).trim().parse().ok())
            .expect("the cgroup reports no peak (memory.max_usage_in_bytes or memory.peak)")
    }
}

/// Clears the settings the child should take from its limit alone.
fn isolate(cmd: &mut Command, envs: &[(&str, &str)]) {
    for s in membatch::settings::all()
        .iter()
        .filter(|s| s.name() != "model")
    {
        for var in std::iter::once(s.env()).chain(s.aliases().iter().copied()) {
            cmd.env_remove(var);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        // The children have exited; an empty cgroup can be removed.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn example(name: &str) -> PathBuf {
    common::example_bin(name)
}

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "memory_report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("memory_report prints JSON")
}

/// Every test needs root; `scripts/test.sh` runs them as root and skips
/// the `as_root` tests by name (saying so) for anyone else.
mod as_root {
    use super::*;

    #[test]
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
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
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
    fn the_environment_sets_the_budget_inside_the_cgroup() {
        let cg = TempCgroup::new("env", 300 * MIB);
        let bin = example("memory_report");
        let r = report(&cg.run(&bin, &[("MEMBATCH_MAX_MEMORY", "100MiB")]));
        assert_eq!(r["budget_bytes"], 100 * MIB, "{r}");
        let r = report(&cg.run(&bin, &[("MEMBATCH_MAX_MEMORY", "50%")]));
        assert_eq!(r["budget_bytes"], 150 * MIB, "{r}");
        // The older name of the same setting.
        let r = report(&cg.run(&bin, &[("EMBEDDING_MAX_MEMORY_PERCENT", "50")]));
        assert_eq!(r["budget_bytes"], 150 * MIB, "{r}");
        let r = report(&cg.run(&bin, &[("MEMBATCH_MAX_MEMORY", "1TiB")]));
        assert_eq!(
            r["budget_bytes"],
            300 * MIB,
            "an absolute budget never exceeds the limit: {r}"
        );
    }

    /// Parses `embed`'s JSON Lines into vectors, checking the indices.
    fn vectors(out: &Output) -> Vec<Vec<f32>> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["index"], i, "input order");
                v["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    }

    /// The headline: a corpus of long texts (every one truncated at 256
    /// tokens) in a 128 MiB cgroup, above the f32 model's own floor (about
    /// 86 MiB: benches/floors.py). The packed pass holds one chunk of tokens (16 MiB of
    /// buffers) however large the batch, and the embedder's last look before a
    /// batch charges it so (the cost prior is chunked): fixed batches of 64
    /// (16,384 tokens, ~232 MiB by a prior that counted every token) run there,
    /// and so does BatchEmbedder with the default budget (70% of the limit),
    /// both with the embeddings of an unconstrained run, nothing OOM-killed.
    /// (Where loading is refused with a typed error: the next tests.)
    #[test]
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
    fn fixed_batches_of_64_and_batch_embedder_both_finish_in_128_mib() {
        let limit = 128 * MIB;
        let texts = membatch_testkit::corpus::uniform_corpus(96, 300, 11);
        let input: String = texts.iter().map(|t| format!("{t}\n")).collect();
        let embed = example("embed");

        let mut free = Command::new(&embed);
        isolate(&mut free, &[]);
        let reference = feed(free, input.as_bytes());
        assert!(
            reference.status.success(),
            "unconstrained run failed (the real model is required): {}",
            String::from_utf8_lossy(&reference.stderr)
        );
        let reference = vectors(&reference);
        assert_eq!(reference.len(), 96);

        for (name, args, envs) in [
            ("fixed", &["--fixed-batch", "64"][..], &[][..]),
            ("batched", &[][..], &[("RUST_LOG", "membatch=info")][..]),
        ] {
            let cg = TempCgroup::new(name, limit);
            let out = cg.run_with(&embed, args, input.as_bytes(), envs);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{name} failed in {} MiB: {:?} {stderr}",
                limit / MIB,
                out.status
            );
            assert_eq!(cg.oom_kills(), 0, "{name}");
            assert_same(name, &vectors(&out), &reference);
            let peak = cg.max_usage();
            eprintln!(
                "{name}: cgroup peak {} MiB of {} MiB; log:\n{stderr}",
                peak / MIB,
                limit / MIB
            );
            // The kernel never lets usage pass the limit, so the meaningful
            // bound is lower: the run stayed clear of it (measured 99 MiB of
            // 128 MiB either way, the model's page cache included), never
            // leaning on reclaim to live.
            assert!(
                peak <= limit / 10 * 9,
                "{name}: cgroup peak {} MiB is within 10% of the {} MiB limit",
                peak / MIB,
                limit / MIB
            );
        }
    }

    /// What the load check estimates is what loading costs: the peak rise
    /// of the process's memory while the weights load, measured inside a
    /// memory cgroup (`load_report`), is within 20% of the estimate for
    /// MiniLM and MPNet, f32 and int8, the first time and after an unload;
    /// an unload gives the memory back, so a reload never needs more room.
    #[test]
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
    fn load_estimates_are_within_20_percent_of_what_loading_costs() {
        let bin = example("load_report");
        for model in ["all-MiniLM-L6-v2", "all-mpnet-base-v2"] {
            let dir = common::fetched_model_dir(model);
            for precision in ["f32", "int8"] {
                let cg = TempCgroup::new("load-estimate", 1024 * MIB);
                let out = cg.run(
                    &bin,
                    &[
                        ("MEMBATCH_MODEL", dir.to_str().unwrap()),
                        ("MEMBATCH_PRECISION", precision),
                    ],
                );
                assert!(
                    out.status.success(),
                    "load_report {model} {precision}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let bytes = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{r}"));
                let estimate = bytes(&r["estimate"]["peak_bytes"]) as f64;
                for load in ["load", "reload"] {
                    let measured = bytes(&r[load]["peak_rise_bytes"]) as f64;
                    let off = estimate / measured - 1.0;
                    eprintln!(
                        "{model} {precision} {load}: estimate {:.1} MiB, measured {:.1} MiB ({:+.1}%)",
                        estimate / MIB as f64,
                        measured / MIB as f64,
                        100.0 * off
                    );
                    assert!(off.abs() <= 0.2, "{model} {precision} {load}: {r}");
                }
                // A reload needs no more than the first load did.
                let (first, again) = (
                    bytes(&r["load"]["peak_rise_bytes"]),
                    bytes(&r["reload"]["peak_rise_bytes"]),
                );
                assert!(
                    again <= first + first / 50 + MIB,
                    "{model} {precision}: the reload rose {again} bytes, the first load {first}"
                );
                let before = bytes(&r["load"]["rss_before_bytes"]);
                let after_unload = bytes(&r["rss_after_unload_bytes"]);
                assert!(
                    after_unload <= before + 4 * MIB,
                    "{model} {precision}: the unload kept {} MiB: {r}",
                    (after_unload - before) / MIB
                );
                assert_eq!(cg.oom_kills(), 0);
            }
        }
    }

    /// A container too small to hold the f32 model: loading is refused with a
    /// typed error naming the fix instead of being OOM-killed, and the int8
    /// weights (a third of the memory) run the same corpus there. (64 MiB:
    /// a 45 MiB budget, where the f32 load needs 46 MiB of headroom and
    /// int8 18; f32 runs from about 86 MiB, int8 from 43: docs/memory.md.)
    #[test]
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
    fn a_limit_too_small_to_load_is_an_error_and_int8_fits_it() {
        let limit = 64 * MIB;
        let texts = membatch_testkit::corpus::uniform_corpus(24, 200, 5);
        let input: String = texts.iter().map(|t| format!("{t}\n")).collect();
        let embed = example("embed");

        let cg = TempCgroup::new("load-f32", limit);
        let f32 = cg.run_with(&embed, &["--precision", "f32"], input.as_bytes(), &[]);
        let stderr = String::from_utf8_lossy(&f32.stderr);
        assert_eq!(f32.status.code(), Some(1), "{:?} {stderr}", f32.status);
        assert!(
            stderr.contains("not enough memory to load the model") && stderr.contains("int8"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_eq!(cg.oom_kills(), 0);

        let cg = TempCgroup::new("load-int8", limit);
        let int8 = cg.run_with(&embed, &["--precision", "int8"], input.as_bytes(), &[]);
        assert!(
            int8.status.success(),
            "int8 failed in {} MiB: {:?} {}",
            limit / MIB,
            int8.status,
            String::from_utf8_lossy(&int8.stderr)
        );
        assert_eq!(vectors(&int8).len(), texts.len());
        assert_eq!(cg.oom_kills(), 0);
    }

    /// 64 callers at once, each embedding 2 of 128 long texts (all 256
    /// tokens), in a 240 MiB cgroup: through one EmbedService every call
    /// succeeds (queued, not refused), never OOM-killed, although the load is
    /// 8 times what one batch can hold there.
    #[test]
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
    fn sixty_four_concurrent_callers_all_succeed_through_one_service_in_240_mib() {
        let limit = 240 * MIB;
        let cg = TempCgroup::new("service", limit);
        let out = cg.run_with(
            &example("service_load"),
            &["--callers", "64", "--per-caller", "2"],
            b"",
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?} {stderr}", out.status);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        eprintln!("{r}; cgroup peak {} MiB", cg.max_usage() / MIB);
        assert_eq!(r["ok"], 64, "{r}");
        assert_eq!(r["failed"], 0, "{r}");
        assert_eq!(cg.oom_kills(), 0);
    }

    /// Feeds `input` to `child` and collects stdout, counting stderr lines that
    /// contain `marker` and calling `at` once when there are `count` of them.
    fn watch(
        mut child: std::process::Child,
        input: String,
        marker: &'static str,
        count: usize,
        at: impl FnOnce(),
    ) -> Output {
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let mut log = String::new();
        let mut seen = 0;
        let mut at = Some(at);
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            if line.contains(marker) {
                seen += 1;
                if seen == count {
                    if let Some(f) = at.take() {
                        f();
                    }
                }
            }
            log.push_str(&line);
            log.push('\n');
        }
        let status = child.wait().unwrap();
        writer.join().unwrap();
        Output {
            status,
            stdout: reader.join().unwrap(),
            stderr: log.into_bytes(),
        }
    }

    /// Embeds every `every`-th of `texts` (from the first) without a limit:
    /// the vectors a limited run must match at those places (a text's
    /// vector does not depend on its batch, so a sample checks the run at
    /// a fraction of a second full run's cost).
    fn unconstrained(texts: &[String], every: usize) -> Vec<Vec<f32>> {
        let input: String = texts
            .iter()
            .step_by(every)
            .map(|t| format!("{t}\n"))
            .collect();
        let mut free = Command::new(example("embed"));
        isolate(&mut free, &[]);
        let out = feed(free, input.as_bytes());
        assert!(
            out.status.success(),
            "unconstrained run failed (the real model is required): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        vectors(&out)
    }

    /// Every vector of the run `what` within 1e-5 of the reference's.
    fn assert_same(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
        assert_sampled(what, got, want, 1);
    }

    /// The run `what` has one vector per text, and every `every`-th is
    /// within 1e-5 of the reference's (`want`, one per sampled text).
    fn assert_sampled(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], every: usize) {
        assert_eq!(got.len().div_ceil(every), want.len(), "{what}");
        for (i, (a, b)) in got.iter().step_by(every).zip(want).enumerate() {
            let i = i * every;
            let d = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(d <= 1e-5, "{what}: text {i} differs by {d}");
        }
    }

    /// A run that grew its batches under a 600 MiB limit has the limit lowered
    /// to 230 MiB under it, as an operator would: in the middle of a batch, the
    /// write retried until the kernel accepts it (v1 takes a lower limit only
    /// once usage fits under it; a batch's memory is charged from its start,
    /// so that is between batches). A fresh run completes in 230 MiB, so this
    /// one must too, shrinking its batches, never OOM-killed.
    #[test]
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
    fn a_limit_lowered_during_a_run_shrinks_its_batches_and_it_completes() {
        // Batches grow by 28 texts (8, 36, 64): 44 texts fill the first two,
        // the third (64) and the 112 after it run once the limit is lowered.
        let texts = membatch_testkit::corpus::uniform_corpus(220, 300, 21);
        let want = unconstrained(&texts, 4);
        let input: String = texts.iter().map(|t| format!("{t}\n")).collect();
        let cg = TempCgroup::new("lowered", 600 * MIB);
        let child = cg.spawn(
            &example("embed"),
            &[],
            &[
                ("RUST_LOG", "membatch=debug"),
                ("MEMBATCH_BATCH_STEP", "28"),
            ],
        );
        let lowered = std::cell::Cell::new(None);
        // After the third batch started: the rule has grown to 64 by then,
        // and a batch of 64 texts of 256 tokens has run.
        let out = watch(child, input, "processing batch", 3, || {
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            while !cg.set_limit(230 * MIB) {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "the kernel never took 230 MiB"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            lowered.set(Some(started.elapsed()));
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            lowered.get().is_some(),
            "the run ended before the limit was lowered"
        );
        assert!(
            out.status.success(),
            "the run failed after the limit was lowered: {:?} {}",
            out.status,
            stderr
                .lines()
                .filter(|l| !l.contains("DEBUG"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(cg.oom_kills(), 0);
        assert_sampled("under the limit", &vectors(&out), &want, 4);
        let after: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("processing batch"))
            .collect();
        eprintln!(
            "limit taken {:?} after the first try, 300 ms into the third batch; {} batches in all",
            lowered.get().unwrap(),
            after.len()
        );
    }

    /// Another process in the same cgroup grabs 150 MiB of a 400 MiB limit in
    /// the middle of a run: the run sees it in the cgroup's usage, shrinks its
    /// batches and completes with the same vectors; nobody is OOM-killed.
    #[test]
    #[ignore = "needs root to create a memory cgroup: scripts/test.sh runs it as root"]
    fn a_neighbour_grabbing_memory_mid_run_shrinks_the_batches_instead_of_killing_anyone() {
        let texts = membatch_testkit::corpus::uniform_corpus(160, 300, 33);
        let want = unconstrained(&texts, 4);
        let input: String = texts.iter().map(|t| format!("{t}\n")).collect();
        let cg = TempCgroup::new("balloon", 400 * MIB);
        let child = cg.spawn(&example("embed"), &[], &[("RUST_LOG", "membatch=debug")]);
        let balloon = std::cell::RefCell::new(None);
        let out = watch(child, input, "processing batch", 3, || {
            // 150 MiB, every page touched, held for eight seconds.
            let procs = cg.dir.join("cgroup.procs");
            let b = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > '{}' && exec python3 -c \"import time; n = 150 << 20; b = bytearray(n); b[::4096] = b'x' * (n // 4096); print('grabbed', flush=True); time.sleep(8)\"",
                    procs.display()
                ))
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 for the balloon");
            balloon.replace(Some(b));
        });
        let mut b = balloon.into_inner().expect("the balloon started");
        let mut grabbed = String::new();
        let _ = b.stdout.take().unwrap().read_to_string(&mut grabbed);
        let b_status = b.wait().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{:?} {}",
            out.status,
            stderr
                .lines()
                .filter(|l| !l.contains("DEBUG"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            grabbed.contains("grabbed"),
            "the balloon never held its memory"
        );
        assert!(b_status.success(), "the balloon was killed: {b_status:?}");
        assert_eq!(cg.oom_kills(), 0);
        assert_sampled("under the limit", &vectors(&out), &want, 4);
    }
}
