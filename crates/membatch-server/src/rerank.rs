//! `POST /rerank`: a query and texts in, the texts' relevance scores out,
//! best first, in the shape of text-embeddings-inference's route:
//! `{"query": "...", "texts": [...], "raw_scores": false, "return_text":
//! false}` → `[{"index": 0, "score": 0.98, "text"?: "..."}, ...]`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use membatch::rerank::rerank_in_batches;
use membatch::{BatchConfig, MemoryBudget, Reranker};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::AppState;

/// Most texts in one rerank request.
pub const MAX_RERANK_TEXTS: usize = 2048;

/// A reranker and what its batches plan with.
pub struct RerankState {
    reranker: Arc<dyn Reranker>,
    budget: MemoryBudget,
    batch: BatchConfig,
    /// One rerank at a time: each plans its batches within the whole
    /// budget beside the embedding worker's.
    running: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for RerankState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RerankState").finish_non_exhaustive()
    }
}

impl RerankState {
    /// Reranks with `reranker`, its batches planned within `budget` (share
    /// the embedding service's, so both count against one limit).
    pub fn new(reranker: Arc<dyn Reranker>, budget: MemoryBudget, batch: BatchConfig) -> Self {
        RerankState {
            reranker,
            budget,
            batch,
            running: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RerankRequest {
    query: String,
    texts: Vec<String>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Rank {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// `POST /rerank`.
pub(crate) async fn rerank(
    State(app): State<Arc<AppState>>,
    body: Result<Json<RerankRequest>, JsonRejection>,
) -> Result<Json<Vec<Rank>>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        let Some(state) = app.reranker.clone() else {
            return Err(ApiError::bad_request(
                "this server has no reranker: start it with --reranker DIR (a cross-encoder)",
                None,
            ));
        };
        if req.texts.is_empty() {
            return Err(ApiError::bad_request("texts is empty", Some("texts")));
        }
        if req.texts.len() > MAX_RERANK_TEXTS {
            return Err(ApiError::bad_request(
                format!(
                    "{} texts, more than the {MAX_RERANK_TEXTS} one request may hold",
                    req.texts.len()
                ),
                Some("texts"),
            ));
        }
        let RerankRequest {
            query,
            texts,
            raw_scores,
            return_text,
        } = req;
        let job = state;
        let scores = tokio::time::timeout(app.request_timeout, async move {
            // One rerank at a time; waiting counts against the request's
            // timeout. The permit is held by the blocking task itself, so a
            // request that timed out still keeps the next one waiting until
            // its batches are done.
            let turn = job
                .running
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| ApiError::internal(format!("reranker closed: {e}")))?;
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                let scores = rerank_in_batches(
                    job.reranker.as_ref(),
                    &query,
                    &texts,
                    job.budget.clone(),
                    job.batch,
                );
                (scores, texts)
            })
            .await
            .map_err(|e| ApiError::internal(format!("rerank failed: {e}")))
        })
        .await
        .map_err(|_| ApiError::timed_out(app.request_timeout))??;
        let (scores, texts) = scores;
        let scores = scores?;
        let mut ranks: Vec<Rank> = scores
            .into_iter()
            .enumerate()
            .map(|(index, logit)| Rank {
                index,
                score: if raw_scores {
                    logit
                } else {
                    1.0 / (1.0 + (-logit).exp())
                },
                text: return_text.then(|| texts[index].clone()),
            })
            .collect();
        // Best first; ties keep the input order.
        ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(Json(ranks))
    }
    .await;
    result.map_err(ApiError::native)
}
