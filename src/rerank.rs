//! Cross-encoder reranking: a query and documents in, one relevance score
//! per document out, in input order.
//!
//! A [`Reranker`] scores each (query, document) pair jointly: one forward
//! pass over the pair's tokens, so a pair's cost is its joint token length.
//! [`QueryPairs`] presents one query's documents to the batching machinery
//! as an [`Embedder`] of one-value "vectors" whose token counts are the
//! pairs' joint lengths; [`rerank_in_batches`] runs it through a
//! [`BatchEmbedder`], so reranking gets the same memory-planned, adaptive,
//! retried batches as embedding.

use crate::batch::{BatchConfig, BatchEmbedder};
use crate::embedder::{Embedder, ModelInfo, Tokens};
use crate::error::Result;
use crate::memory::MemoryBudget;

use crate::embedder::Reranker;

/// One query's documents as an [`Embedder`]: each document "embeds" to its
/// one score, and counts the tokens of its pair with the query, so a
/// [`BatchEmbedder`] budgets pairs by their joint length.
pub struct QueryPairs<'a, R: ?Sized> {
    reranker: &'a R,
    query: &'a str,
}

// By hand: derives would ask `R` to be Clone, Copy and Debug too.
impl<R: ?Sized> Clone for QueryPairs<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: ?Sized> Copy for QueryPairs<'_, R> {}

impl<R: ?Sized> std::fmt::Debug for QueryPairs<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPairs")
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl<'a, R: Reranker + ?Sized> QueryPairs<'a, R> {
    /// The pairs of `query` with whatever documents are embedded.
    pub fn new(reranker: &'a R, query: &'a str) -> Self {
        QueryPairs { reranker, query }
    }
}

impl<R: Reranker + ?Sized> Embedder for QueryPairs<'_, R> {
    fn info(&self) -> ModelInfo {
        self.reranker.info()
    }

    fn tokenize(&self, documents: &[&str]) -> Result<Vec<Tokens>> {
        self.reranker.tokenize_pairs(self.query, documents)
    }

    fn embed_tokens(&self, pairs: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        Ok(scores_as_vectors(self.reranker.score_tokens(pairs)?))
    }
}

/// Scores as the one-value vectors a batcher hands around.
fn scores_as_vectors(scores: Vec<f32>) -> Vec<Vec<f32>> {
    scores.into_iter().map(|s| vec![s]).collect()
}

/// A reranker as the service's second lane of work: batches of pairs
/// tokenized at admission (each with its own query), run through a
/// [`BatchEmbedder`] of their own, with its own cost model and batch rule,
/// in the service's budget.
pub(crate) struct PairLane(pub(crate) std::sync::Arc<dyn Reranker>);

impl Embedder for PairLane {
    fn info(&self) -> ModelInfo {
        self.0.info()
    }

    /// Never called: the service tokenizes each request's pairs with its
    /// query ([`Reranker::tokenize_pairs`]) when it admits it.
    fn tokenize(&self, _: &[&str]) -> Result<Vec<Tokens>> {
        Err(crate::error::Error::Tokenization(crate::error::boxed(
            std::io::Error::other(
                "a rerank lane runs pairs tokenized with their query at admission",
            ),
        )))
    }

    fn embed_tokens(&self, pairs: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        Ok(scores_as_vectors(self.0.score_tokens(pairs)?))
    }
}

/// Scores every document against `query` in batches planned within
/// `budget` (as [`BatchEmbedder`] plans embeddings: by the pairs' joint
/// token lengths, grown after successes, halved under memory pressure):
/// one score per document, in input order.
///
/// # Errors
///
/// As [`BatchEmbedder::new`] and [`BatchEmbedder::embed`].
///
/// # Example
///
/// ```no_run
/// # #[cfg(feature = "candle")] {
/// use membatch::bert::BertReranker;
/// use membatch::rerank::rerank_in_batches;
/// use membatch::{BatchConfig, MemoryBudget, MemoryConfig, ModelSource};
///
/// let reranker = BertReranker::load(ModelSource::dir("models/ms-marco-MiniLM-L-6-v2"))?;
/// let docs = ["Paris is the capital of France.", "Berlin is in Germany."];
/// let scores = rerank_in_batches(
///     &reranker,
///     "What is the capital of France?",
///     &docs,
///     MemoryBudget::new(MemoryConfig::default()),
///     BatchConfig::default(),
/// )?;
/// assert!(scores[0] > scores[1]);
/// # }
/// # Ok::<(), membatch::Error>(())
/// ```
pub fn rerank_in_batches<R: Reranker + ?Sized, S: AsRef<str>>(
    reranker: &R,
    query: &str,
    documents: &[S],
    budget: MemoryBudget,
    config: BatchConfig,
) -> Result<Vec<f32>> {
    let batcher = BatchEmbedder::new(QueryPairs::new(reranker, query), budget, config)?;
    let scores = batcher.embed(documents)?;
    Ok(scores.into_iter().map(|s| s[0]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryConfig;

    /// Scores a document by its length, and counts a pair as query plus
    /// document characters.
    struct ByLength;

    impl Reranker for ByLength {
        fn info(&self) -> ModelInfo {
            ModelInfo::new(1, 512)
        }
        /// A pair's tokens: the query's bytes (segment 0), then the
        /// document's (segment 1).
        fn tokenize_pairs(&self, query: &str, documents: &[&str]) -> Result<Vec<Tokens>> {
            Ok(documents
                .iter()
                .map(|d| {
                    let ids: Vec<u32> = query.bytes().chain(d.bytes()).map(u32::from).collect();
                    let types = (0..ids.len())
                        .map(|i| u32::from(i >= query.len()))
                        .collect();
                    Tokens::new(ids).with_type_ids(types)
                })
                .collect())
        }
        /// The document's length less the query's.
        fn score_tokens(&self, pairs: &[&Tokens]) -> Result<Vec<f32>> {
            Ok(pairs
                .iter()
                .map(|p| {
                    let doc = p.type_ids().map_or(0, |t| t.iter().sum::<u32>()) as f32;
                    doc - (p.len() as f32 - doc)
                })
                .collect())
        }
    }

    #[test]
    fn batches_keep_the_documents_order_and_count_the_pairs() {
        let docs: Vec<String> = (0..100).map(|i| "x".repeat((i * 37) % 90)).collect();
        let scores = rerank_in_batches(
            &ByLength,
            "abc",
            &docs,
            MemoryBudget::new(MemoryConfig::default()),
            BatchConfig::default(),
        )
        .unwrap();
        let want: Vec<f32> = docs.iter().map(|d| d.len() as f32 - 3.0).collect();
        assert_eq!(scores, want);
        let pairs = QueryPairs::new(&ByLength, "abc");
        let lengths: Vec<usize> = pairs
            .tokenize(&["", "12345"])
            .unwrap()
            .iter()
            .map(Tokens::len)
            .collect();
        assert_eq!(lengths, vec![3, 8]);
        assert_eq!(pairs.info().dimension, 1);
    }

    #[test]
    fn the_trait_is_object_safe() {
        let boxed: Box<dyn Reranker> = Box::new(ByLength);
        let scores = rerank_in_batches(
            boxed.as_ref(),
            "",
            &["ab"],
            MemoryBudget::new(MemoryConfig::default()),
            BatchConfig::default(),
        )
        .unwrap();
        assert_eq!(scores, vec![2.0]);
    }
}
