//! [`Precision`]: how a model's weights are held.
//!
//! A leaf of the crate, so that errors can name a precision without
//! depending on the configuration that chooses one.

use std::fmt;
use std::str::FromStr;

/// How a model's weights are held.
///
/// `F32` reproduces the reference model (sentence-transformers) to 1e-6.
/// `Int8` keeps the word embeddings and every dense layer's weights as
/// bytes with one scale per 32 values, expanded to `f32` just before each
/// product: a third of the resident model (31 MiB instead of 97 MiB for
/// all-MiniLM-L6-v2) at about the same speed, cosine similarity to the `F32`
/// output of at least 0.9994 on the reference texts (measured figures in
/// `docs/benchmarks.md`). Arithmetic stays `f32` either way.
///
/// Parsed from `f32` or `int8` (case-insensitive; also `fp32`, `float32`,
/// `i8`, `q8`):
///
/// ```
/// use membatch::Precision;
/// assert_eq!("INT8".parse::<Precision>(), Ok(Precision::Int8));
/// assert_eq!(Precision::Int8.to_string(), "int8");
/// assert!("int4".parse::<Precision>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precision {
    /// Plain `f32`, exact.
    #[default]
    F32,
    /// Int8 weights, `f32` arithmetic.
    Int8,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        })
    }
}

/// A text that names no [`Precision`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}: must be f32 or int8")]
pub struct ParsePrecisionError(String);

impl FromStr for Precision {
    type Err = ParsePrecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "int8" | "i8" | "q8" => Ok(Precision::Int8),
            _ => Err(ParsePrecisionError(s.to_string())),
        }
    }
}
