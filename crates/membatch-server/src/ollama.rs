//! Ollama's embedding API, for the clients that speak it (`ollama`'s
//! `Client.embed`, LangChain's `OllamaEmbeddings`, Open WebUI):
//! `POST /api/embed`, the older `POST /api/embeddings`, `GET /api/tags`
//! and `GET /api/version`. Errors are Ollama's `{"error": "..."}`.
//!
//! Fields, as the `ollama` Python client (0.6) sends them:
//! - `model`: answered by the served model, named so (another name logs a
//!   warning once, or is a 404 with `--strict-model-name`);
//! - `input` (a string or a list of strings), or `prompt` on the older route;
//! - `truncate` (default true): false refuses a text longer than the model
//!   reads, as Ollama does;
//! - `dimensions`: the first N values, normalised again;
//! - `keep_alive`, `options`: accepted and ignored (the model stays loaded
//!   as `--idle-unload-secs` says; sampling options mean nothing to an
//!   encoder).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use membatch::{EmbedOptions, Truncation};

#[allow(unused_imports)] // the OpenAPI attributes name it
use crate::error::{ApiError, OllamaError};
use crate::AppState;

/// Ollama's `input`: one text or many.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum OllamaInput {
    One(String),
    Many(Vec<String>),
}

/// `POST /api/embed`'s request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OllamaEmbedRequest)]
pub(crate) struct EmbedRequest {
    #[serde(default)]
    model: Option<String>,
    input: OllamaInput,
    /// Cut a text longer than the model reads (default true); false
    /// refuses it (400).
    #[serde(default)]
    truncate: Option<bool>,
    /// Keep the first N dimensions, normalised again.
    #[serde(default)]
    dimensions: Option<i64>,
    /// Accepted and ignored: the model stays loaded as
    /// `--idle-unload-secs` says.
    #[serde(default)]
    #[allow(dead_code)]
    keep_alive: Option<Value>,
    /// Accepted and ignored: sampling options mean nothing to an encoder.
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
}

/// `POST /api/embeddings`' request (Ollama's older route).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OllamaEmbeddingsRequest)]
pub(crate) struct EmbeddingsRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: String,
    /// Accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    keep_alive: Option<Value>,
    /// Accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
}

/// `POST /api/embed`'s response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OllamaEmbedResponse {
    /// The served model's name.
    model: String,
    /// One unit-length vector per input, in order.
    embeddings: Vec<Vec<f32>>,
    /// Nanoseconds, the whole request.
    total_duration: u64,
    /// Nanoseconds spent waiting for the model's load (0 when loaded).
    load_duration: u64,
    /// The inputs' tokens.
    prompt_eval_count: usize,
}

/// `POST /api/embeddings`' response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OllamaEmbeddingResponse {
    embedding: Vec<f32>,
}

/// `GET /api/tags`' response: the served model.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OllamaTags {
    models: Vec<OllamaModel>,
}

/// A model as Ollama lists it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OllamaModel {
    name: String,
    model: String,
    modified_at: &'static str,
    /// The weights' bytes.
    size: u64,
    digest: &'static str,
    details: OllamaModelDetails,
}

/// A model's details as Ollama lists them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OllamaModelDetails {
    format: &'static str,
    family: &'static str,
    families: Vec<&'static str>,
    parameter_size: &'static str,
    quantization_level: &'static str,
}

/// `GET /api/version`'s response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OllamaVersion {
    /// membatch-server's version.
    version: &'static str,
}

/// Embeds `texts` as `options` say; the vectors have unit length, as
/// Ollama's do. Returns them with the tokens counted at admission.
async fn embed(
    app: &AppState,
    texts: Vec<String>,
    options: EmbedOptions,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let (mut vectors, tokens) = crate::embed::run(app, texts, options).await?;
    for v in &mut vectors {
        crate::embed::normalize(v);
    }
    Ok((vectors, tokens))
}

/// Checks a `/api/embed` request against a model of `dimension`: its
/// texts and options, or the 400 that says why not.
pub(crate) fn validate(
    req: EmbedRequest,
    dimension: usize,
) -> Result<(Vec<String>, EmbedOptions), ApiError> {
    let texts = match req.input {
        OllamaInput::One(t) => vec![t],
        OllamaInput::Many(t) => t,
    };
    if texts.is_empty() {
        return Err(ApiError::bad_request("input is empty", Some("input")));
    }
    let mut options = EmbedOptions::new();
    if let Some(n) = crate::embed::dimensions(req.dimensions, dimension)? {
        options = options.with_dimensions(n);
    }
    if req.truncate == Some(false) {
        options = options.with_truncation(Truncation::Refuse);
    }
    Ok((texts, options))
}

/// `POST /api/embed`.
#[utoipa::path(
    post,
    path = "/api/embed",
    tag = "Ollama",
    summary = "Embeddings, as Ollama's API answers them",
    request_body = EmbedRequest,
    responses(
        (status = 200, description = "One unit-length vector per input, in order", body = OllamaEmbedResponse,
            headers(
                ("x-request-id" = String, description = "The request's id"),
                ("x-membatch-truncated" = usize, description = "Inputs cut to the model's sequence length"))),
        (status = 400, description = "Malformed or empty, dimensions the model lacks, a text too long with truncate false", body = OllamaError),
        (status = 401, description = "No valid API key", body = OllamaError),
        (status = 404, description = "Another model, with --strict-model-name", body = OllamaError),
        (status = 413, description = "Over the limits", body = OllamaError),
        (status = 429, description = "The queue is full: retry after Retry-After", body = OllamaError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
        (status = 500, description = "The model failed on the batch, or a caught panic (in OpenAI's shape)", body = OllamaError),
        (status = 503, description = "Memory critical, the model unavailable, a timeout or shutdown", body = OllamaError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn embed_route(
    State(app): State<Arc<AppState>>,
    body: Result<Json<EmbedRequest>, JsonRejection>,
) -> Result<Json<OllamaEmbedResponse>, ApiError> {
    let started = Instant::now();
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        app.check_model(req.model.as_deref())?;
        let (texts, options) = validate(req, app.service.info().dimension)?;
        let loaded = app.service.model_state().is_loaded();
        let (embeddings, tokens) = embed(&app, texts, options).await?;
        let total = started.elapsed().as_nanos() as u64;
        Ok(Json(OllamaEmbedResponse {
            model: app.model_name.clone(),
            embeddings,
            total_duration: total,
            // The model was loaded, or this request waited for its load:
            // then the whole wait is counted (an upper bound).
            load_duration: if loaded { 0 } else { total },
            prompt_eval_count: tokens,
        }))
    }
    .await;
    result.map_err(ApiError::ollama)
}

/// `POST /api/embeddings`: one `prompt`, one `embedding`.
#[utoipa::path(
    post,
    path = "/api/embeddings",
    tag = "Ollama",
    summary = "One embedding, as Ollama's older route answers it",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "The prompt's unit-length vector", body = OllamaEmbeddingResponse,
            headers(
                ("x-request-id" = String, description = "The request's id"),
                ("x-membatch-truncated" = usize, description = "1 when the prompt was cut to the model's sequence length"))),
        (status = 400, description = "Malformed", body = OllamaError),
        (status = 401, description = "No valid API key", body = OllamaError),
        (status = 404, description = "Another model, with --strict-model-name", body = OllamaError),
        (status = 413, description = "Over the limits", body = OllamaError),
        (status = 429, description = "The queue is full: retry after Retry-After", body = OllamaError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
        (status = 500, description = "The model failed on the batch, or a caught panic (in OpenAI's shape)", body = OllamaError),
        (status = 503, description = "Memory critical, the model unavailable, a timeout or shutdown", body = OllamaError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn embeddings_route(
    State(app): State<Arc<AppState>>,
    body: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<OllamaEmbeddingResponse>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        app.check_model(req.model.as_deref())?;
        let (mut vectors, _) = embed(&app, vec![req.prompt], EmbedOptions::new()).await?;
        Ok(Json(OllamaEmbeddingResponse {
            embedding: vectors.pop().unwrap_or_default(),
        }))
    }
    .await;
    result.map_err(ApiError::ollama)
}

/// `GET /api/tags`: the served model, as Ollama lists its local models.
#[utoipa::path(
    get,
    path = "/api/tags",
    tag = "Ollama",
    summary = "The served model, as Ollama lists its models",
    responses(
        (status = 200, description = "The served model", body = OllamaTags),
        (status = 401, description = "No valid API key", body = OllamaError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn tags(State(app): State<Arc<AppState>>) -> Json<OllamaTags> {
    let info = app.service.info();
    Json(OllamaTags {
        models: vec![OllamaModel {
            name: app.model_name.clone(),
            model: app.model_name.clone(),
            modified_at: "1970-01-01T00:00:00Z",
            size: info.weight_bytes.unwrap_or(0),
            digest: "",
            details: OllamaModelDetails {
                format: "safetensors",
                family: "bert",
                families: vec!["bert"],
                parameter_size: "",
                quantization_level: "",
            },
        }],
    })
}

/// `GET /api/version`: membatch-server's version.
#[utoipa::path(
    get,
    path = "/api/version",
    tag = "Ollama",
    summary = "membatch-server's version, as Ollama answers its own",
    responses(
        (status = 200, description = "The version", body = OllamaVersion),
        (status = 401, description = "No valid API key", body = OllamaError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn version() -> Json<OllamaVersion> {
    Json(OllamaVersion {
        version: env!("CARGO_PKG_VERSION"),
    })
}
