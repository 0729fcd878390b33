//! [`Reranker`]: what a cross-encoder backend offers to membatch, beside
//! [`Embedder`](super::Embedder). Planning rerank batches is
//! [`rerank`](crate::rerank)'s; serving them is the
//! [`EmbedService`](crate::EmbedService)'s.

use super::{ModelInfo, Tokens};
use crate::error::Result;

/// A cross-encoder: scores how well each document answers a query.
///
/// Object-safe and `Send + Sync`, like [`Embedder`](super::Embedder), and
/// shaped like it: each (query, document) pair is tokenized once
/// ([`tokenize_pairs`](Reranker::tokenize_pairs)), then batches of pairs
/// are scored ([`score_tokens`](Reranker::score_tokens)), one batch per
/// call, memory trouble reported as
/// [`Error::MemoryPressure`](crate::Error::MemoryPressure) to be retried
/// smaller. [`info`](Reranker::info) describes the model as an embedder's
/// does, with `dimension` 1 (one score per pair) and `max_seq_length` the
/// most tokens of one pair.
pub trait Reranker: Send + Sync {
    /// What a batcher plans with (see [`ModelInfo`]).
    fn info(&self) -> ModelInfo;

    /// Each (query, document) pair as the model sees it: special tokens
    /// and segment ids included, truncated to the model's
    /// `max_seq_length`. One entry per document, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`](crate::Error::Tokenization) when the tokenizer fails.
    fn tokenize_pairs(&self, query: &str, documents: &[&str]) -> Result<Vec<Tokens>>;

    /// One score per pair (from this reranker's
    /// [`tokenize_pairs`](Reranker::tokenize_pairs)), in order: the model's
    /// raw relevance logit (higher is more relevant; apply a sigmoid for a
    /// probability-like value).
    ///
    /// # Errors
    ///
    /// [`Error::Inference`](crate::Error::Inference) when the backend fails;
    /// [`Error::MemoryPressure`](crate::Error::MemoryPressure) to be retried
    /// smaller.
    fn score_tokens(&self, pairs: &[&Tokens]) -> Result<Vec<f32>>;

    /// Tokenizes and scores every document against `query` as one batch.
    /// A convenience over the two calls above; for many documents within a
    /// memory limit use [`rerank_in_batches`](crate::rerank::rerank_in_batches)
    /// or an [`EmbedService`](crate::EmbedService).
    ///
    /// # Errors
    ///
    /// As [`tokenize_pairs`](Reranker::tokenize_pairs) and
    /// [`score_tokens`](Reranker::score_tokens).
    fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>> {
        let pairs = self.tokenize_pairs(query, documents)?;
        self.score_tokens(&pairs.iter().collect::<Vec<_>>())
    }
}

macro_rules! forward_reranker {
    ($($ptr:ty),*) => {$(
        impl<R: Reranker + ?Sized> Reranker for $ptr {
            fn info(&self) -> ModelInfo {
                (**self).info()
            }
            fn tokenize_pairs(&self, query: &str, documents: &[&str]) -> Result<Vec<Tokens>> {
                (**self).tokenize_pairs(query, documents)
            }
            fn score_tokens(&self, pairs: &[&Tokens]) -> Result<Vec<f32>> {
                (**self).score_tokens(pairs)
            }
        }
    )*};
}

forward_reranker!(&R, Box<R>, std::sync::Arc<R>);
