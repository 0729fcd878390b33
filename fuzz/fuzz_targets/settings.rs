//! Arbitrary `NAME=value` lines as the environment for `Config`, and
//! arbitrary values for every settings parser: a value or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use membatch::memory::{parse_size, MemoryLimit};
use membatch::{Config, Precision};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Ok(c) = Config::from_lookup(lookup) {
        // What it validated must hold.
        assert!(c.batch().min_batch_size() >= 1);
        assert!(c.batch().min_batch_size() <= c.batch().max_batch_size());
        if let Some(p) = c.memory().max_percent() {
            assert!(p > 0.0 && p <= 100.0);
        }
        assert!(c.memory().budget_bytes(1 << 30) <= 1 << 30);
    }
    let _ = MemoryLimit::parse("x", &text);
    let _ = parse_size("x", &text);
    let _ = text.parse::<Precision>();
});
