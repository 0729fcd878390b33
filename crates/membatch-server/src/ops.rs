//! The operations routes: `/health`, `/info`, `/memory`,
//! `/memory/unload`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use membatch::ModelState;
use serde_json::json;

use crate::error::ApiError;
use crate::prometheus;
use crate::AppState;

/// `GET /health`: 200 while the worker serves and the model is loaded or
/// loadable; 503 once the worker failed or the service shut down, or while
/// the model's last load failed. A dead worker never looks healthy.
pub(crate) async fn health(State(app): State<Arc<AppState>>) -> Response {
    let service = &app.service;
    let model = service.model_state();
    if !service.is_serving() {
        let reason = match service.failure() {
            Some(e) => e.report().to_string(),
            None => "the service is shut down".to_string(),
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "model": model.as_str(), "reason": reason})),
        )
            .into_response();
    }
    if let ModelState::Failed(e) = &model {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unhealthy",
                "model": "failed",
                "reason": format!("loading the model failed: {}", e.report()),
            })),
        )
            .into_response();
    }
    Json(json!({"status": "ok", "model": model.as_str()})).into_response()
}

/// The served model as OpenAI's API lists a model.
fn model_entry(app: &AppState) -> serde_json::Value {
    json!({
        "id": app.model_name,
        "object": "model",
        "created": app.created,
        "owned_by": "membatch",
    })
}

/// `GET /v1/models`: the served model.
pub(crate) async fn models(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "object": "list", "data": [model_entry(&app)] }))
}

/// `GET /v1/models/{id}`: the served model, or 404 for any other id.
pub(crate) async fn model(
    State(app): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if id == app.model_name {
        Ok(Json(model_entry(&app)))
    } else {
        Err(ApiError::model_not_found(&id, &app.model_name))
    }
}

/// `GET /info`: the model and the limits.
pub(crate) async fn info(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let s = &app.service;
    let c = s.config();
    let model = s.info();
    Json(json!({
        "model": app.model_name,
        "dimension": model.dimension,
        "max_seq_length": model.max_seq_length,
        "reranker_max_seq_length": s.reranker_info().map(|r| r.max_seq_length),
        "max_inputs_per_request": c.max_inputs_per_request(),
        "max_tokens_per_request": c.max_tokens_per_request(),
        "max_queued_requests": c.max_queued_requests(),
        "max_queued_tokens": c.max_queued_tokens(),
        "idle_unload_seconds": c.idle_unload().map(|d| d.as_secs()),
        "request_timeout_seconds": app.request_timeout.as_secs_f64(),
        "version": env!("CARGO_PKG_VERSION"),
        // text-embeddings-inference's fields, for its clients.
        "model_id": app.model_name,
        "model_sha": null,
        "model_dtype": match app.precision {
            membatch::Precision::Int8 => "int8",
            _ => "float32",
        },
        "model_type": {"embedding": {"pooling": app.pooling.as_deref().unwrap_or("mean")}},
        "max_concurrent_requests": c.max_queued_requests(),
        "max_input_length": model.max_seq_length,
        "max_batch_tokens": c.max_tokens_per_request(),
        "max_batch_requests": null,
        "max_client_batch_size": c.max_inputs_per_request(),
        "auto_truncate": true,
        "tokenization_workers": null,
        "sha": null,
        "docker_label": null,
    }))
}

/// `GET /memory`: what membatch sees, and where the model and the batch
/// size stand.
pub(crate) async fn memory(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let m = app.service.metrics();
    let r = m.memory;
    let s = r.snapshot;
    Json(json!({
        "rss_bytes": s.rss_bytes,
        "peak_rss_bytes": m.memory.snapshot.peak_rss_bytes,
        "system_total_bytes": s.system_total_bytes,
        "system_available_bytes": s.system_available_bytes,
        "cgroup_version": s.cgroup.map(|c| c.version),
        "cgroup_limit_bytes": s.cgroup_limit_bytes(),
        "cgroup_usage_bytes": s.cgroup.map(|c| c.usage_bytes),
        "effective_limit_bytes": s.effective_limit_bytes(),
        "figure_bytes": r.figure_bytes,
        "figure_source": s.figure_source(),
        "budget_bytes": r.budget_bytes,
        "headroom_bytes": r.headroom_bytes(),
        "level": r.level,
        "model_state": m.model.as_str(),
        "batch_size": m.batch_size,
        "queued_requests": m.queued_requests,
        "queued_tokens": m.queued_tokens,
    }))
}

/// `POST /memory/unload`: frees the model (after the batch in progress);
/// the next request loads it again.
pub(crate) async fn unload(
    State(app): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = app.service.clone();
    let r = tokio::task::spawn_blocking(move || service.unload())
        .await
        .map_err(|e| ApiError::internal(format!("unload failed: {e}")))?;
    Ok(Json(json!({
        "freed": r.freed,
        "rss_before_bytes": r.rss_before_bytes,
        "rss_after_bytes": r.rss_after_bytes,
        "figure_before_bytes": r.figure_before_bytes,
        "figure_after_bytes": r.figure_after_bytes,
        "model_state": app.service.model_state().as_str(),
    })))
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let text = prometheus::render(&app.service.metrics(), &app.http.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
