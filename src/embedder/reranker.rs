//! [`Reranker`]: what a cross-encoder backend offers to membatch, beside
//! [`Embedder`](super::Embedder). Planning rerank batches is
//! [`rerank`](crate::rerank)'s.

use super::{CostPrior, ModelShape};
use crate::error::Result;

/// A cross-encoder: scores how well each document answers a query.
///
/// Object-safe and `Send + Sync`, like [`Embedder`](super::Embedder). Implementations score
/// one batch per call and report memory trouble as
/// [`Error::MemoryPressure`](crate::Error::MemoryPressure), to be retried
/// smaller; [`rerank_in_batches`](crate::rerank::rerank_in_batches) plans the batches.
pub trait Reranker: Send + Sync {
    /// One score per document, in the documents' order: the model's raw
    /// relevance logit (higher is more relevant; apply a sigmoid for a
    /// probability-like value).
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`](crate::Error::Tokenization) or
    /// [`Error::Inference`](crate::Error::Inference) when the backend fails;
    /// [`Error::MemoryPressure`](crate::Error::MemoryPressure) to be retried
    /// smaller.
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>>;

    /// The tokens each (query, document) pair becomes, special tokens
    /// included and after truncation to
    /// [`max_seq_length`](Reranker::max_seq_length).
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`](crate::Error::Tokenization) when the tokenizer fails.
    fn pair_token_counts(&self, query: &str, documents: &[&str]) -> Result<Vec<usize>>;

    /// The most tokens of one pair the model looks at.
    fn max_seq_length(&self) -> usize;

    /// As [`Embedder::shape`](super::Embedder::shape). Default `None`.
    fn shape(&self) -> Option<ModelShape> {
        None
    }

    /// As [`Embedder::cost_prior`](super::Embedder::cost_prior): what a batch of pairs costs. Default
    /// `None`.
    fn cost_prior(&self) -> Option<CostPrior> {
        None
    }

    /// As [`Embedder::weight_bytes`](super::Embedder::weight_bytes). Default `None`.
    fn weight_bytes(&self) -> Option<u64> {
        None
    }
}

impl<R: Reranker + ?Sized> Reranker for &R {
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>> {
        (**self).score(query, documents)
    }
    fn pair_token_counts(&self, query: &str, documents: &[&str]) -> Result<Vec<usize>> {
        (**self).pair_token_counts(query, documents)
    }
    fn max_seq_length(&self) -> usize {
        (**self).max_seq_length()
    }
    fn shape(&self) -> Option<ModelShape> {
        (**self).shape()
    }
    fn cost_prior(&self) -> Option<CostPrior> {
        (**self).cost_prior()
    }
    fn weight_bytes(&self) -> Option<u64> {
        (**self).weight_bytes()
    }
}
