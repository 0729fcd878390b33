//! The operations routes: `/health`, `/info`, `/memory`,
//! `/memory/unload`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use membatch::memory::{CgroupVersion, FigureSource};
use membatch::{ModelState, PressureLevel};
use serde::Serialize;
use utoipa::ToSchema;

#[allow(unused_imports)] // the OpenAPI attributes name it
use crate::error::{ApiError, OpenAiError};
use crate::prometheus;
use crate::AppState;

/// `GET /health`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` or `unhealthy`.
    status: &'static str,
    /// The model's state: `loaded`, `unloaded`, `loading`, `failed`.
    model: &'static str,
    /// Why the server is unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /health`: 200 while the worker serves and the model is loaded or
/// loadable; 503 once the worker failed or the service shut down, or while
/// the model's last load failed. A dead worker never looks healthy.
#[utoipa::path(
    get,
    path = "/health",
    tag = "Operations",
    summary = "Whether the server serves (open: no API key)",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The worker failed, the service shut down, or the model's last load failed", body = Health),
    )
)]
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
            Json(Health {
                status: "unhealthy",
                model: model.as_str(),
                reason: Some(reason),
            }),
        )
            .into_response();
    }
    if let ModelState::Failed(e) = &model {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unhealthy",
                model: "failed",
                reason: Some(format!("loading the model failed: {}", e.report())),
            }),
        )
            .into_response();
    }
    Json(Health {
        status: "ok",
        model: model.as_str(),
        reason: None,
    })
    .into_response()
}

/// A model as OpenAI's API lists it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelEntry {
    id: String,
    object: &'static str,
    /// Seconds since the epoch: when the server started.
    created: u64,
    owned_by: &'static str,
}

/// OpenAI's list of models: the served one.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

/// The served model as OpenAI's API lists a model.
fn model_entry(app: &AppState) -> ModelEntry {
    ModelEntry {
        id: app.model_name.clone(),
        object: "model",
        created: app.created,
        owned_by: "membatch",
    }
}

/// `GET /v1/models`: the served model.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "OpenAI",
    summary = "The served model, as OpenAI lists models",
    responses(
        (status = 200, description = "The served model", body = ModelList),
        (status = 401, description = "No valid API key", body = OpenAiError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn models(State(app): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![model_entry(&app)],
    })
}

/// `GET /v1/models/{id}`: the served model, or 404 for any other id.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "OpenAI",
    summary = "The served model by its name (a hub name may hold a slash)",
    params(("id" = String, Path, description = "The served model's name")),
    responses(
        (status = 200, description = "The served model", body = ModelEntry),
        (status = 401, description = "No valid API key", body = OpenAiError),
        (status = 404, description = "Another model", body = OpenAiError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn model(
    State(app): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<ModelEntry>, ApiError> {
    if id == app.model_name {
        Ok(Json(model_entry(&app)))
    } else {
        Err(ApiError::model_not_found(&id, &app.model_name))
    }
}

/// `GET /info`'s answer: membatch's fields, then text-embeddings-inference's.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Info {
    /// The served model's name.
    model: String,
    dimension: usize,
    /// Tokens a text is cut to.
    max_seq_length: usize,
    #[schema(required = true)]
    reranker_max_seq_length: Option<usize>,
    max_inputs_per_request: usize,
    max_tokens_per_request: usize,
    max_queued_requests: usize,
    max_queued_tokens: usize,
    #[schema(required = true)]
    idle_unload_seconds: Option<u64>,
    request_timeout_seconds: f64,
    version: &'static str,
    /// TEI's: the served model's name.
    model_id: String,
    #[schema(required = true)]
    model_sha: Option<String>,
    /// TEI's: `float32` or `int8`.
    model_dtype: &'static str,
    /// TEI's: `{"embedding": {"pooling": "mean"}}`.
    model_type: ModelType,
    max_concurrent_requests: usize,
    max_input_length: usize,
    max_batch_tokens: usize,
    #[schema(required = true)]
    max_batch_requests: Option<usize>,
    max_client_batch_size: usize,
    auto_truncate: bool,
    #[schema(required = true)]
    tokenization_workers: Option<usize>,
    #[schema(required = true)]
    sha: Option<String>,
    #[schema(required = true)]
    docker_label: Option<String>,
}

/// TEI's `model_type`: an embedding model and its pooling.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelType {
    embedding: Pooling,
}

/// A pooling method: `mean`, `cls`, `max`, `lasttoken`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Pooling {
    pooling: String,
}

/// `GET /info`: the model and the limits.
#[utoipa::path(
    get,
    path = "/info",
    tag = "Operations",
    summary = "The model and the limits (text-embeddings-inference's fields included)",
    responses(
        (status = 200, description = "The model and the limits", body = Info),
        (status = 401, description = "No valid API key", body = OpenAiError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn info(State(app): State<Arc<AppState>>) -> Json<Info> {
    let s = &app.service;
    let c = s.config();
    let model = s.info();
    Json(Info {
        model: app.model_name.clone(),
        dimension: model.dimension,
        max_seq_length: model.max_seq_length,
        reranker_max_seq_length: s.reranker_info().map(|r| r.max_seq_length),
        max_inputs_per_request: c.max_inputs_per_request(),
        max_tokens_per_request: c.max_tokens_per_request(),
        max_queued_requests: c.max_queued_requests(),
        max_queued_tokens: c.max_queued_tokens(),
        idle_unload_seconds: c.idle_unload().map(|d| d.as_secs()),
        request_timeout_seconds: app.request_timeout.as_secs_f64(),
        version: env!("CARGO_PKG_VERSION"),
        model_id: app.model_name.clone(),
        model_sha: None,
        model_dtype: match app.precision {
            membatch::Precision::Int8 => "int8",
            _ => "float32",
        },
        model_type: ModelType {
            embedding: Pooling {
                pooling: app.pooling.clone().unwrap_or_else(|| "mean".into()),
            },
        },
        max_concurrent_requests: c.max_queued_requests(),
        max_input_length: model.max_seq_length,
        max_batch_tokens: c.max_tokens_per_request(),
        max_batch_requests: None,
        max_client_batch_size: c.max_inputs_per_request(),
        auto_truncate: true,
        tokenization_workers: None,
        sha: None,
        docker_label: None,
    })
}

/// `GET /memory`'s answer: what membatch sees.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Memory {
    #[schema(required = true)]
    rss_bytes: Option<u64>,
    #[schema(required = true)]
    peak_rss_bytes: Option<u64>,
    system_total_bytes: u64,
    system_available_bytes: u64,
    /// `v1` or `v2`, when in a memory cgroup.
    #[schema(value_type = Option<String>)]
    #[schema(required = true)]
    cgroup_version: Option<CgroupVersion>,
    #[schema(required = true)]
    cgroup_limit_bytes: Option<u64>,
    #[schema(required = true)]
    cgroup_usage_bytes: Option<u64>,
    effective_limit_bytes: u64,
    /// The figure compared with the budget.
    figure_bytes: u64,
    /// `cgroup_working_set`, `process_rss` or `system_used`.
    #[schema(value_type = String)]
    figure_source: FigureSource,
    budget_bytes: u64,
    headroom_bytes: u64,
    /// `normal`, `elevated`, `high` or `critical`.
    #[schema(value_type = String)]
    level: PressureLevel,
    model_state: &'static str,
    batch_size: usize,
    queued_requests: usize,
    queued_tokens: usize,
}

/// `GET /memory`: what membatch sees, and where the model and the batch
/// size stand.
#[utoipa::path(
    get,
    path = "/memory",
    tag = "Operations",
    summary = "What membatch sees of memory, and where the model and the batch size stand",
    responses(
        (status = 200, description = "Memory figures", body = Memory),
        (status = 401, description = "No valid API key", body = OpenAiError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn memory(State(app): State<Arc<AppState>>) -> Json<Memory> {
    let m = app.service.metrics();
    let r = m.memory;
    let s = r.snapshot;
    Json(Memory {
        rss_bytes: s.rss_bytes,
        peak_rss_bytes: m.memory.snapshot.peak_rss_bytes,
        system_total_bytes: s.system_total_bytes,
        system_available_bytes: s.system_available_bytes,
        cgroup_version: s.cgroup.map(|c| c.version),
        cgroup_limit_bytes: s.cgroup_limit_bytes(),
        cgroup_usage_bytes: s.cgroup.map(|c| c.usage_bytes),
        effective_limit_bytes: s.effective_limit_bytes(),
        figure_bytes: r.figure_bytes,
        figure_source: s.figure_source(),
        budget_bytes: r.budget_bytes,
        headroom_bytes: r.headroom_bytes(),
        level: r.level,
        model_state: m.model.as_str(),
        batch_size: m.batch_size,
        queued_requests: m.queued_requests,
        queued_tokens: m.queued_tokens,
    })
}

/// `POST /memory/unload`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Unloaded {
    /// Whether the model was loaded (and is now freed).
    freed: bool,
    #[schema(required = true)]
    rss_before_bytes: Option<u64>,
    #[schema(required = true)]
    rss_after_bytes: Option<u64>,
    figure_before_bytes: u64,
    figure_after_bytes: u64,
    model_state: &'static str,
}

/// `POST /memory/unload`: frees the model (after the batch in progress);
/// the next request loads it again.
#[utoipa::path(
    post,
    path = "/memory/unload",
    tag = "Operations",
    summary = "Frees the model (after the batch in progress); the next request loads it again",
    responses(
        (status = 200, description = "What the unload freed", body = Unloaded),
        (status = 401, description = "No valid API key", body = OpenAiError),
        (status = 500, description = "A failure of the server", body = OpenAiError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn unload(State(app): State<Arc<AppState>>) -> Result<Json<Unloaded>, ApiError> {
    let service = app.service.clone();
    let r = tokio::task::spawn_blocking(move || service.unload())
        .await
        .map_err(|e| ApiError::internal(format!("unload failed: {e}")))?;
    Ok(Json(Unloaded {
        freed: r.freed,
        rss_before_bytes: r.rss_before_bytes,
        rss_after_bytes: r.rss_after_bytes,
        figure_before_bytes: r.figure_before_bytes,
        figure_after_bytes: r.figure_after_bytes,
        model_state: app.service.model_state().as_str(),
    }))
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Operations",
    summary = "Prometheus metrics (open: no API key)",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
    )
)]
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
