//! `POST /rerank`: a query and texts in, the texts' relevance scores out,
//! best first, in the shape of text-embeddings-inference's route:
//! `{"query": "...", "texts": [...], "raw_scores": false, "return_text":
//! false}` → `[{"index": 0, "score": 0.98, "text"?: "..."}, ...]`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::AppState;

/// Most texts in one rerank request.
pub const MAX_RERANK_TEXTS: usize = 2048;

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
        if app.service.reranker_info().is_none() {
            return Err(ApiError::bad_request(
                "this server has no reranker: start it with --reranker DIR (a cross-encoder)",
                None,
            ));
        }
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
        // Admission on a blocking thread (it tokenizes the pairs, once);
        // then the pairs run on the service's worker, in its queue and
        // memory budget, and a request that timed out is skipped.
        let service = app.service.clone();
        let (pending, texts) = tokio::task::spawn_blocking(move || {
            let pending = service.submit_rerank(&query, &texts);
            (pending, texts)
        })
        .await
        .map_err(|e| ApiError::internal(format!("admission failed: {e}")))?;
        let (scores, _) = crate::await_answer(&app, pending?).await?;
        let mut ranks: Vec<Rank> = scores
            .into_iter()
            .enumerate()
            .map(|(index, logit)| (index, logit[0]))
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
