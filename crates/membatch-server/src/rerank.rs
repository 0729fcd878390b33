//! `POST /rerank`: a query and texts in, the texts' relevance scores out,
//! best first, in the shape of text-embeddings-inference's route:
//! `{"query": "...", "texts": [...], "raw_scores": false, "return_text":
//! false}` → `[{"index": 0, "score": 0.98, "text"?: "..."}, ...]`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[allow(unused_imports)] // the OpenAPI attributes name them
use crate::error::{ApiError, CohereError, JinaError, TeiError};
use crate::AppState;

/// Most texts in one rerank request.
pub const MAX_RERANK_TEXTS: usize = 2048;

/// text-embeddings-inference's rerank request.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RerankRequest {
    query: String,
    texts: Vec<String>,
    /// The logits instead of their sigmoid.
    #[serde(default)]
    raw_scores: bool,
    /// Each result carries its text.
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

/// One text's score, best first.
#[derive(Debug, Serialize, ToSchema)]
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
    let (pending, texts) = crate::blocking(move || {
        let pending = service.submit_rerank_with(&query, &texts, truncation);
        (pending, texts)
    })
    .await?;
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
#[utoipa::path(
    post,
    path = "/rerank",
    tag = "text-embeddings-inference",
    summary = "Scores texts against a query with the reranker, best first",
    request_body = RerankRequest,
    responses(
        (status = 200, description = "Every text's score, best first", body = Vec<Rank>,
            headers(
                ("x-request-id" = String, description = "The request's id"),
                ("x-membatch-truncated" = usize, description = "Pairs cut to the reranker's sequence length"))),
        (status = 400, description = "Malformed or empty, or no reranker", body = TeiError),
        (status = 401, description = "No valid API key", body = TeiError),
        (status = 413, description = "Over the limits; a pair too long with truncate false", body = TeiError),
        (status = 429, description = "The queue is full: retry after Retry-After", body = TeiError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
        (status = 500, description = "The reranker failed on the batch, or a caught panic (in OpenAI's shape)", body = TeiError),
        (status = 503, description = "Memory critical, a timeout or shutdown", body = TeiError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("api_key" = []))
)]
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
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CohereRequest {
    #[serde(default)]
    model: Option<String>,
    query: String,
    pub(crate) documents: Vec<String>,
    /// The best N only (at least 1).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub(crate) top_n: Option<usize>,
    /// Accepted and ignored: each pair is cut at the reranker's limit.
    #[serde(default)]
    #[allow(dead_code)]
    max_tokens_per_doc: Option<u64>,
    /// Accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    priority: Option<i64>,
}

/// Cohere's v2 rerank response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohereResponse {
    id: String,
    results: Vec<Relevance>,
    meta: CohereMeta,
}

/// A document's index and score (Cohere's and Jina's results).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Relevance {
    index: usize,
    /// The sigmoid of the reranker's logit.
    relevance_score: f32,
    /// Jina's, with `return_documents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    document: Option<DocumentText>,
}

/// A document as Jina returns it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DocumentText {
    text: String,
}

/// Cohere's `meta`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohereMeta {
    api_version: CohereVersion,
    billed_units: CohereBilled,
    tokens: CohereTokens,
}

/// Cohere's API version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohereVersion {
    version: &'static str,
}

/// What Cohere would bill: one search unit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohereBilled {
    search_units: u32,
}

/// The request's tokens (every pair's).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohereTokens {
    input_tokens: usize,
}

/// `POST /v2/rerank`: Cohere's shape. `relevance_score` is the sigmoid of
/// the logit, as `/rerank` scores.
#[utoipa::path(
    post,
    path = "/v2/rerank",
    tag = "Cohere",
    summary = "Rerank, as Cohere's v2 API answers it",
    request_body = CohereRequest,
    responses(
        (status = 200, description = "The documents' scores, best first", body = CohereResponse,
            headers(
                ("x-request-id" = String, description = "The request's id"),
                ("x-membatch-truncated" = usize, description = "Pairs cut to the reranker's sequence length"))),
        (status = 400, description = "Malformed or empty, top_n 0, or no reranker", body = CohereError),
        (status = 401, description = "No valid API key", body = CohereError),
        (status = 404, description = "Another model, with --strict-model-name", body = CohereError),
        (status = 413, description = "Over the limits", body = CohereError),
        (status = 429, description = "The queue is full: retry after Retry-After", body = CohereError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
        (status = 422, description = "A document that cannot be tokenized", body = CohereError),
        (status = 500, description = "The reranker failed on the batch, or a caught panic (in OpenAI's shape)", body = CohereError),
        (status = 503, description = "Memory critical, a timeout or shutdown", body = CohereError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn cohere(
    State(app): State<Arc<AppState>>,
    body: Result<Json<CohereRequest>, JsonRejection>,
) -> Result<Json<CohereResponse>, ApiError> {
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
        let results = ranked(&logits, top)
            .into_iter()
            .map(|index| Relevance {
                index,
                relevance_score: sigmoid(logits[index]),
                document: None,
            })
            .collect();
        Ok(Json(CohereResponse {
            id: format!("membatch-{}", crate::request_number()),
            results,
            meta: CohereMeta {
                api_version: CohereVersion { version: "2" },
                billed_units: CohereBilled { search_units: 1 },
                tokens: CohereTokens {
                    input_tokens: tokens,
                },
            },
        }))
    }
    .await;
    result.map_err(ApiError::cohere)
}

/// A Jina document: a string or `{"text": ...}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum JinaDocument {
    Text(String),
    Object { text: String },
}

/// Jina's rerank request (its published API reference). `model` is
/// answered by the served reranker.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct JinaRequest {
    #[serde(default)]
    model: Option<String>,
    query: String,
    pub(crate) documents: Vec<JinaDocument>,
    /// The best N only (at least 1).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub(crate) top_n: Option<usize>,
    /// Each result carries its document (default true).
    #[serde(default = "yes")]
    return_documents: bool,
}

/// Jina's rerank response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JinaResponse {
    /// The reranker's name.
    model: String,
    usage: JinaUsage,
    results: Vec<Relevance>,
}

/// The request's tokens (every pair's).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JinaUsage {
    total_tokens: usize,
}

fn yes() -> bool {
    true
}

/// `POST /v1/rerank`: Jina's shape.
#[utoipa::path(
    post,
    path = "/v1/rerank",
    tag = "Jina",
    summary = "Rerank, as Jina's API answers it",
    request_body = JinaRequest,
    responses(
        (status = 200, description = "The documents' scores, best first", body = JinaResponse,
            headers(
                ("x-request-id" = String, description = "The request's id"),
                ("x-membatch-truncated" = usize, description = "Pairs cut to the reranker's sequence length"))),
        (status = 400, description = "Malformed or empty, top_n 0, or no reranker", body = JinaError),
        (status = 401, description = "No valid API key", body = JinaError),
        (status = 404, description = "Another model, with --strict-model-name", body = JinaError),
        (status = 413, description = "Over the limits", body = JinaError),
        (status = 429, description = "The queue is full: retry after Retry-After", body = JinaError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
        (status = 422, description = "A document that cannot be tokenized", body = JinaError),
        (status = 500, description = "The reranker failed on the batch, or a caught panic (in OpenAI's shape)", body = JinaError),
        (status = 503, description = "Memory critical, a timeout or shutdown", body = JinaError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn jina(
    State(app): State<Arc<AppState>>,
    body: Result<Json<JinaRequest>, JsonRejection>,
) -> Result<Json<JinaResponse>, ApiError> {
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
        let results = ranked(&logits, top)
            .into_iter()
            .map(|index| Relevance {
                index,
                relevance_score: sigmoid(logits[index]),
                document: req.return_documents.then(|| DocumentText {
                    text: texts[index].clone(),
                }),
            })
            .collect();
        Ok(Json(JinaResponse {
            model: app
                .reranker_name
                .clone()
                .unwrap_or_else(|| app.model_name.clone()),
            usage: JinaUsage {
                total_tokens: tokens,
            },
            results,
        }))
    }
    .await;
    result.map_err(ApiError::jina)
}
