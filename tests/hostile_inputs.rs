//! Hostile inputs through the `embed` CLI (and so the library) on a tiny
//! model: empty, whitespace, NUL bytes, a 100 MB line, a quarter million
//! tiny lines, one word repeated two million times. Each gives a correct result
//! or a one-line typed error, in bounded memory (the child's peak RSS, read
//! with `wait4`). Alone in its test binary: the kernel counts in a child's
//! peak the memory of the process that started it, so the tests that load
//! the real model beside these would raise every figure.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

use common::{example_bin, tiny_model_dir, Tiny};

const MIB: u64 = 1 << 20;

/// What a run gave: its status, the number of output lines (each checked
/// to be a finite vector with its index), stderr, and the peak RSS.
struct Run {
    status: ExitStatus,
    lines: usize,
    stderr: String,
    max_rss: u64,
}

/// Runs `embed --model <tiny>` with stdin written by `feed`, streaming the
/// output (a million lines are never held) and measuring the child alone.
fn run(feed: impl FnOnce(&mut dyn Write) + Send + 'static) -> Run {
    let model = tiny_model_dir(&Tiny::default());
    // Reaped below with wait4, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(example_bin("embed"))
        .args(["--model", model.path().to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut stdin);
        feed(&mut w);
        let _ = w.flush();
    });
    let stdout = child.stdout.take().unwrap();
    let counter = std::thread::spawn(move || {
        let mut n = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["index"], n, "input order");
            let e = v["embedding"].as_array().unwrap();
            assert_eq!(e.len(), common::TINY_HIDDEN);
            assert!(e.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)));
            n += 1;
        }
        n
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let (mut status, mut usage) = (0, std::mem::MaybeUninit::<libc::rusage>::zeroed());
    // SAFETY: wait4 waits for our own child and fills `status` and
    // `usage`, both valid for writes; the child is not waited for elsewhere.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(pid, child.id() as i32, "wait4");
    // SAFETY: wait4 succeeded, so it filled the structure.
    let usage = unsafe { usage.assume_init() };
    writer.join().unwrap();
    let run = Run {
        status: ExitStatus::from_raw(status),
        lines: counter.join().unwrap(),
        stderr,
        max_rss: usage.ru_maxrss as u64 * 1024,
    };
    eprintln!(
        "{} lines, peak RSS {:.1} MiB",
        run.lines,
        run.max_rss as f64 / MIB as f64
    );
    run
}

#[test]
fn empty_whitespace_and_nul_bytes_are_texts_like_any_other() {
    let r = run(|_| {});
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.lines, 0);
    let r = run(|w| {
        w.write_all(b"\n   \n\t\t\nhello\0world\n\0\0\0\n").unwrap();
    });
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.lines, 5);
}

#[test]
fn invalid_utf8_is_a_one_line_error() {
    let r = run(|w| w.write_all(b"fine\n\xc3\x28 broken\n").unwrap());
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
}

#[test]
fn a_100_mb_line_is_embedded_in_memory_proportional_to_the_line() {
    let r = run(|w| {
        let chunk = "lorem ipsum dolor sit amet the quick brown fox ".repeat(1 << 14);
        let mut written = 0;
        while written < 100 << 20 {
            w.write_all(chunk.as_bytes()).unwrap();
            written += chunk.len();
        }
        w.write_all(b"\nshort\n").unwrap();
    });
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.lines, 2);
    // The line itself (read into one buffer, which may double as it
    // grows), nothing proportional to its tokens: it is cut to a prefix
    // that holds the model's sequence before it is tokenised.
    // Measured: 108 MiB.
    assert!(r.max_rss < 160 * MIB, "peak RSS {} MiB", r.max_rss / MIB);
}

#[test]
fn a_quarter_million_tiny_lines_stream_in_flat_memory() {
    const LINES: usize = 250_000;
    let r = run(|w| {
        for i in 0..LINES {
            writeln!(w, "{}", ["a", "fox", "the dog", ""][i % 4]).unwrap();
        }
    });
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.lines, LINES);
    // Measured: 8 MiB (windows of 2,048 lines). Holding every vector
    // until the end would take 31 MiB for them alone (250,000 × 32 floats).
    assert!(r.max_rss < 24 * MIB, "peak RSS {} MiB", r.max_rss / MIB);
}

#[test]
fn one_word_repeated_two_million_times_is_one_text() {
    let r = run(|w| {
        w.write_all("the ".repeat(2_000_000).as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
    });
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.lines, 1);
    // Measured: 15 MiB for the 8 MB line.
    assert!(r.max_rss < 64 * MIB, "peak RSS {} MiB", r.max_rss / MIB);
}
