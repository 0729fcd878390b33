//! Arbitrary contents for the files memory readings come from, split at
//! 0xFF bytes: "unknown", never a panic (`membatch::fuzzing::memory_files`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| membatch::fuzzing::memory_files(data));
