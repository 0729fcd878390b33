//! Test and benchmark support for the membatch workspace; not published,
//! not part of membatch's API.
//!
//! - [`corpus`]: the deterministic mixed-length corpus every benchmark
//!   measures, and the cosine similarity results are compared by;
//! - [`fuzz`]: the fuzz targets' seeds and inputs mutated from them, for
//!   running their bodies as ordinary tests;
//! - [`tiny`]: tiny random BERT model directories for tests that do not
//!   need the real weights.

#![warn(missing_docs)]

pub mod corpus;
pub mod fuzz;
pub mod process;
pub mod tiny;
