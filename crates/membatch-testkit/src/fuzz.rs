//! Inputs for running the fuzz targets' bodies as ordinary tests: each
//! target's committed seeds (`fuzz/seeds/<target>/`), and a proptest
//! strategy of inputs mutated from them the way a coverage-guided fuzzer
//! mutates its corpus (bytes flipped, inserted, deleted, repeated, pieces of
//! two seeds spliced, the input cut short) plus plain random bytes.
//!
//! This is no substitute for libFuzzer (`scripts/fuzz.sh`: coverage guided,
//! address sanitizer, hours of runs); it keeps every body exercised on
//! stable in every `cargo test`, in seconds, and proptest shrinks a failing
//! input before reporting it.

use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The directory of `target`'s committed seeds, `fuzz/seeds/<target>` at
/// the workspace root.
pub fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

/// Every seed of `target`, sorted by file name. Panics when there are none:
/// a target without seeds would fuzz nothing but random bytes.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = seeds_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seeds of {target} ({}): {e}", dir.display()))
        .map(|entry| entry.expect("a seed file").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

/// One edit of an input, with positions as fractions of its length so that
/// they stay valid whatever the input's length (and shrink toward 0).
#[derive(Debug, Clone)]
enum Edit {
    /// XOR one byte with a non-zero value.
    Flip(f64, u8),
    /// Insert bytes (often a separator or a byte of JSON or `NAME=value`
    /// syntax, which reach deeper into the parsers than random ones).
    Insert(f64, Vec<u8>),
    /// Delete a run of bytes.
    Delete(f64, f64),
    /// Repeat a run of bytes several times in place.
    Repeat(f64, f64, usize),
    /// Replace the tail from a position with the tail of another seed.
    Splice(f64, usize, f64),
    /// Cut the input short.
    Truncate(f64),
}

fn at(len: usize, fraction: f64) -> usize {
    ((len as f64 * fraction) as usize).min(len)
}

fn apply(input: &mut Vec<u8>, edit: &Edit, seeds: &[Vec<u8>]) {
    let len = input.len();
    match edit {
        Edit::Flip(p, x) if len > 0 => {
            let i = at(len - 1, *p);
            input[i] ^= x;
        }
        Edit::Flip(..) => {}
        Edit::Insert(p, bytes) => {
            let i = at(len, *p);
            input.splice(i..i, bytes.iter().copied());
        }
        Edit::Delete(p, n) => {
            let i = at(len, *p);
            let end = i + at(len - i, *n);
            input.drain(i..end);
        }
        Edit::Repeat(p, n, times) => {
            let i = at(len, *p);
            let end = i + at(len - i, *n).min(64);
            let run = input[i..end].to_vec();
            for _ in 0..*times {
                input.splice(end..end, run.iter().copied());
            }
        }
        Edit::Splice(p, other, q) => {
            let other = &seeds[other % seeds.len()];
            let i = at(len, *p);
            let j = at(other.len(), *q);
            input.truncate(i);
            input.extend_from_slice(&other[j..]);
        }
        Edit::Truncate(p) => input.truncate(at(len, *p)),
    }
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        2 => prop::sample::select(b"\xff\n\r\t =:,{}[]\"\\0-9.eE%".to_vec()),
    ]
}

fn edit(seeds: usize) -> impl Strategy<Value = Edit> {
    let fraction = 0.0..1.0f64;
    prop_oneof![
        3 => (fraction.clone(), 1..=255u8).prop_map(|(p, x)| Edit::Flip(p, x)),
        3 => (fraction.clone(), vec(interesting_byte(), 1..8)).prop_map(|(p, b)| Edit::Insert(p, b)),
        2 => (fraction.clone(), fraction.clone()).prop_map(|(p, n)| Edit::Delete(p, n * 0.25)),
        1 => (fraction.clone(), fraction.clone(), 1..16usize)
            .prop_map(|(p, n, t)| Edit::Repeat(p, n * 0.1, t)),
        1 => (fraction.clone(), 0..seeds.max(1), fraction.clone())
            .prop_map(|(p, o, q)| Edit::Splice(p, o, q)),
        1 => fraction.prop_map(Edit::Truncate),
    ]
}

/// Inputs for `target`: mostly its seeds with up to eight edits, sometimes
/// random bytes.
pub fn inputs(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    let n = seeds.len();
    let mutated = (0..n, vec(edit(n), 0..8)).prop_map(move |(i, edits)| {
        let mut input = seeds[i].clone();
        for e in &edits {
            apply(&mut input, e, &seeds);
        }
        input
    });
    prop_oneof![9 => mutated, 1 => vec(any::<u8>(), 0..512)]
}

/// Runs `body` on every seed of `target`, then on `cases` generated
/// inputs. A panic in `body` fails the test with the (shrunk) input that
/// caused it; the number of inputs run is returned.
pub fn run(target: &str, cases: u32, body: impl Fn(&[u8])) -> usize {
    let seeds = seeds(target);
    for seed in &seeds {
        body(seed);
    }
    let mut runner = TestRunner::new(Config {
        cases,
        // Failures are reported with their input; the committed seeds are
        // where a finding that matters is kept.
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&inputs(target), |input| {
        body(&input);
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz target {target}: {e}");
    }
    seeds.len() + cases as usize
}

#[cfg(test)]
mod tests {
    use proptest::strategy::ValueTree;

    use super::*;

    #[test]
    fn edits_keep_within_the_input_and_change_it() {
        let seeds = vec![b"NAME=value".to_vec(), b"{\"a\": [1, 2]}".to_vec()];
        let mut runner = TestRunner::deterministic();
        let mut changed = 0;
        for _ in 0..500 {
            let edits = vec(edit(2), 1..8).new_tree(&mut runner).unwrap().current();
            let mut input = seeds[0].clone();
            for e in &edits {
                apply(&mut input, e, &seeds);
            }
            changed += usize::from(input != seeds[0]);
        }
        assert!(changed > 400, "only {changed} of 500 inputs changed");
    }

    #[test]
    fn run_reports_the_input_that_panics() {
        let panicked = std::panic::catch_unwind(|| {
            run("settings", 200, |input| assert!(!input.contains(&b'!')))
        });
        assert!(panicked.is_err(), "some mutation inserts a '!'");
    }
}
