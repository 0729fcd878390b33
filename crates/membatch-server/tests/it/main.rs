//! `membatch-server`'s tests, one module per behaviour, in one test binary
//! (each test binary links the whole crate and its dependencies). Tests
//! that need the real weights are `#[ignore]`d; `scripts/test.sh` runs them.

mod axum_snippet;
mod server;
