//! `POST /rerank`: a query and texts in, the texts' relevance scores out,
//! best first, in the shape of text-embeddings-inference's route:
//! `{"query": "...", "texts": [...], "raw_scores": false, "return_text":
//! false}` → `[{"index": 0, "score": 0.98, "text"?: "..."}, ...]`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

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
    /// Whether a pair longer than the reranker reads is cut (default) or
    /// refused (413).
    #[serde(default = "yes")]
    truncate: bool,
    /// Which end a long pair is cut from: `Right` only (see `/embed`).
    #[serde(default)]
    truncation_direction: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Rank {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// Scores every text against `query` with the service's reranker: the
/// raw logits, in input order, and the pairs' tokens. The checks every
/// rerank route shares come first: a reranker, some texts, not too many.
async fn score(
    app: &Arc<AppState>,
    query: String,
    texts: Vec<String>,
    field: &'static str,
    truncation: membatch::Truncation,
) -> Result<(Vec<f32>, Vec<String>, usize), ApiError> {
    if app.service.reranker_info().is_none() {
        return Err(ApiError::bad_request(
            "this server has no reranker: start it with --reranker DIR (a cross-encoder)",
            None,
        ));
    }
    check_count(texts.len(), field)?;
    // Admission on a blocking thread (it tokenizes the pairs, once); then
    // the pairs run on the service's worker, in its queue and memory
    // budget, and a request that timed out is skipped.
    let service = app.service.clone();
    let (pending, texts) = tokio::task::spawn_blocking(move || {
        let pending = service.submit_rerank_with(&query, &texts, truncation);
        (pending, texts)
    })
    .await
    .map_err(|e| ApiError::internal(format!("admission failed: {e}")))?;
    let (scores, tokens) = crate::await_answer(app, pending?).await?;
    Ok((scores.into_iter().map(|s| s[0]).collect(), texts, tokens))
}

/// Some texts to score, and not more than one request may hold.
pub(crate) fn check_count(n: usize, field: &'static str) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::bad_request(
            format!("{field} is empty"),
            Some(field),
        ));
    }
    if n > MAX_RERANK_TEXTS {
        return Err(ApiError::too_many_inputs(n, MAX_RERANK_TEXTS, field));
    }
    Ok(())
}

/// Checks a Cohere or Jina request as its route does before scoring: its
/// documents' count and `top_n`.
#[cfg(any(fuzzing, test))]
pub(crate) fn check_shaped(documents: usize, top: Option<usize>) -> Result<(), ApiError> {
    check_count(documents, "documents")?;
    top_n(top).map(drop)
}

fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// Checks a `top_n`: at least 1 when given.
fn top_n(n: Option<usize>) -> Result<Option<usize>, ApiError> {
    match n {
        Some(0) => Err(ApiError::bad_request(
            "top_n must be at least 1",
            Some("top_n"),
        )),
        n => Ok(n),
    }
}

/// The indices of `scores`, best first (ties keep the input order), at
/// most `top_n`.
fn ranked(scores: &[f32], top_n: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(top_n.unwrap_or(usize::MAX));
    order
}

/// `POST /rerank`, text-embeddings-inference's shape.
pub(crate) async fn rerank(
    State(app): State<Arc<AppState>>,
    body: Result<Json<RerankRequest>, JsonRejection>,
) -> Result<Json<Vec<Rank>>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        crate::embed::truncation_direction(req.truncation_direction.as_deref())?;
        let RerankRequest {
            query,
            texts,
            raw_scores,
            return_text,
            truncate,
            ..
        } = req;
        let truncation = if truncate {
            membatch::Truncation::Cut
        } else {
            membatch::Truncation::Refuse
        };
        let (logits, texts, _) = score(&app, query, texts, "texts", truncation).await?;
        let ranks = ranked(&logits, None)
            .into_iter()
            .map(|index| Rank {
                index,
                score: if raw_scores {
                    logits[index]
                } else {
                    sigmoid(logits[index])
                },
                text: return_text.then(|| texts[index].clone()),
            })
            .collect();
        Ok(Json(ranks))
    }
    .await;
    result.map_err(ApiError::native)
}

/// Cohere's v2 rerank request, as `cohere.ClientV2.rerank` (7.x) sends it.
/// `model` is answered by the served reranker; `max_tokens_per_doc` and
/// `priority` are accepted and ignored (each pair is cut at the
/// reranker's own limit).
#[derive(Debug, Deserialize)]
pub(crate) struct CohereRequest {
    #[serde(default)]
    model: Option<String>,
    query: String,
    pub(crate) documents: Vec<String>,
    #[serde(default)]
    pub(crate) top_n: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    max_tokens_per_doc: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    priority: Option<i64>,
}

/// `POST /v2/rerank`: Cohere's shape. `relevance_score` is the sigmoid of
/// the logit, as `/rerank` scores.
pub(crate) async fn cohere(
    State(app): State<Arc<AppState>>,
    body: Result<Json<CohereRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        app.check_reranker(req.model.as_deref())?;
        let top = top_n(req.top_n)?;
        let (logits, _, tokens) = score(
            &app,
            req.query,
            req.documents,
            "documents",
            membatch::Truncation::Cut,
        )
        .await?;
        let results: Vec<serde_json::Value> = ranked(&logits, top)
            .into_iter()
            .map(|index| json!({"index": index, "relevance_score": sigmoid(logits[index])}))
            .collect();
        Ok(Json(json!({
            "id": format!("membatch-{}", crate::request_number()),
            "results": results,
            "meta": {
                "api_version": {"version": "2"},
                "billed_units": {"search_units": 1},
                "tokens": {"input_tokens": tokens},
            },
        })))
    }
    .await;
    result.map_err(ApiError::cohere)
}

/// A Jina document: a string or `{"text": ...}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum JinaDocument {
    Text(String),
    Object { text: String },
}

/// Jina's rerank request (its published API reference). `model` is
/// answered by the served reranker.
#[derive(Debug, Deserialize)]
pub(crate) struct JinaRequest {
    #[serde(default)]
    model: Option<String>,
    query: String,
    pub(crate) documents: Vec<JinaDocument>,
    #[serde(default)]
    pub(crate) top_n: Option<usize>,
    #[serde(default = "yes")]
    return_documents: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/rerank`: Jina's shape.
pub(crate) async fn jina(
    State(app): State<Arc<AppState>>,
    body: Result<Json<JinaRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        app.check_reranker(req.model.as_deref())?;
        let top = top_n(req.top_n)?;
        let texts = req
            .documents
            .into_iter()
            .map(|d| match d {
                JinaDocument::Text(t) | JinaDocument::Object { text: t } => t,
            })
            .collect();
        let (logits, texts, tokens) = score(
            &app,
            req.query,
            texts,
            "documents",
            membatch::Truncation::Cut,
        )
        .await?;
        let results: Vec<serde_json::Value> = ranked(&logits, top)
            .into_iter()
            .map(|index| {
                let mut r = json!({"index": index, "relevance_score": sigmoid(logits[index])});
                if req.return_documents {
                    r["document"] = json!({"text": texts[index]});
                }
                r
            })
            .collect();
        Ok(Json(json!({
            "model": app.reranker_name.as_deref().unwrap_or(&app.model_name),
            "usage": {"total_tokens": tokens},
            "results": results,
        })))
    }
    .await;
    result.map_err(ApiError::jina)
}
