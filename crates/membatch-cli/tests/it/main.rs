//! The `membatch` binary's tests, one module per behaviour, in one test
//! binary (each test binary links the whole crate and its dependencies).
//! Tests that need the real weights or root are `#[ignore]`d;
//! `scripts/test.sh` runs them (root ones by their `as_root` path).

mod codebase;
mod embed;
mod faults;
