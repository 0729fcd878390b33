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
use crate::embedder::{CostPrior, Embedder, ModelShape};
use crate::error::Result;
use crate::memory::MemoryBudget;

// The backend's contract lives beside `Embedder`; named here too, where
// reranking is planned.
pub use crate::embedder::Reranker;

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
    fn embed(&self, documents: &[&str]) -> Result<Vec<Vec<f32>>> {
        let scores = self.reranker.score(self.query, documents)?;
        Ok(scores.into_iter().map(|s| vec![s]).collect())
    }

    fn dimension(&self) -> usize {
        1
    }

    fn max_seq_length(&self) -> usize {
        self.reranker.max_seq_length()
    }

    fn token_counts(&self, documents: &[&str]) -> Result<Vec<usize>> {
        self.reranker.pair_token_counts(self.query, documents)
    }

    fn shape(&self) -> Option<ModelShape> {
        self.reranker.shape()
    }

    fn cost_prior(&self) -> Option<CostPrior> {
        self.reranker.cost_prior()
    }

    fn weight_bytes(&self) -> Option<u64> {
        self.reranker.weight_bytes()
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
        fn score(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>> {
            Ok(documents
                .iter()
                .map(|d| (d.len() as f32) - query.len() as f32)
                .collect())
        }
        fn pair_token_counts(&self, query: &str, documents: &[&str]) -> Result<Vec<usize>> {
            Ok(documents.iter().map(|d| query.len() + d.len()).collect())
        }
        fn max_seq_length(&self) -> usize {
            512
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
        assert_eq!(pairs.token_counts(&["", "12345"]).unwrap(), vec![3, 8]);
        assert_eq!(pairs.dimension(), 1);
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
