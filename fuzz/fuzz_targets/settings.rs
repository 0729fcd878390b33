//! Arbitrary `NAME=value` lines as the environment for `Config`, and
//! arbitrary values for every settings parser: a value or a typed error
//! (`membatch::fuzzing::settings`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| membatch::fuzzing::settings(data));
