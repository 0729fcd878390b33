//! `membatch-datafusion`'s tests, one module per behaviour, in one test
//! binary (each test binary links the whole crate and DataFusion). Tests
//! that need the real weights are `#[ignore]`d; `scripts/test.sh` runs them.

mod ballista;
mod corpus;
mod sql_cli;
mod udf;
