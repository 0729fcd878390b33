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
use serde::Deserialize;
use serde_json::{json, Value};

use membatch::{EmbedOptions, Truncation};

use crate::error::ApiError;
use crate::AppState;

/// Ollama's `input`: one text or many.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OllamaInput {
    One(String),
    Many(Vec<String>),
}

/// `POST /api/embed`'s request.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbedRequest {
    #[serde(default)]
    model: Option<String>,
    input: OllamaInput,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<i64>,
    /// Accepted and ignored (see the module docs).
    #[serde(default)]
    #[allow(dead_code)]
    keep_alive: Option<Value>,
    /// Accepted and ignored (see the module docs).
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
}

/// `POST /api/embeddings`' request (Ollama's older route).
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: String,
    #[serde(default)]
    #[allow(dead_code)]
    keep_alive: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
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
pub(crate) async fn embed_route(
    State(app): State<Arc<AppState>>,
    body: Result<Json<EmbedRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        app.check_model(req.model.as_deref())?;
        let (texts, options) = validate(req, app.service.info().dimension)?;
        let loaded = app.service.model_state().is_loaded();
        let (embeddings, tokens) = embed(&app, texts, options).await?;
        let total = started.elapsed().as_nanos() as u64;
        Ok(Json(json!({
            "model": app.model_name,
            "embeddings": embeddings,
            "total_duration": total,
            // The model was loaded, or this request waited for its load:
            // then the whole wait is counted (an upper bound).
            "load_duration": if loaded { 0 } else { total },
            "prompt_eval_count": tokens,
        })))
    }
    .await;
    result.map_err(ApiError::ollama)
}

/// `POST /api/embeddings`: one `prompt`, one `embedding`.
pub(crate) async fn embeddings_route(
    State(app): State<Arc<AppState>>,
    body: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        app.check_model(req.model.as_deref())?;
        let (mut vectors, _) = embed(&app, vec![req.prompt], EmbedOptions::new()).await?;
        Ok(Json(
            json!({ "embedding": vectors.pop().unwrap_or_default() }),
        ))
    }
    .await;
    result.map_err(ApiError::ollama)
}

/// `GET /api/tags`: the served model, as Ollama lists its local models.
pub(crate) async fn tags(State(app): State<Arc<AppState>>) -> Json<Value> {
    let info = app.service.info();
    Json(json!({
        "models": [{
            "name": app.model_name,
            "model": app.model_name,
            "modified_at": "1970-01-01T00:00:00Z",
            "size": info.weight_bytes.unwrap_or(0),
            "digest": "",
            "details": {
                "format": "safetensors",
                "family": "bert",
                "families": ["bert"],
                "parameter_size": "",
                "quantization_level": "",
            },
        }]
    }))
}

/// `GET /api/version`: membatch-server's version.
pub(crate) async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}
