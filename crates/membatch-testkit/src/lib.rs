//! Test and benchmark support for the membatch workspace; not published,
//! not part of membatch's API.
//!
//! - [`corpus`]: the deterministic mixed-length corpus every benchmark
//!   measures, and the cosine similarity results are compared by;
//! - [`tiny`]: tiny random BERT model directories for tests that do not
//!   need the real weights.

#![warn(missing_docs)]

pub mod corpus;
pub mod tiny;
