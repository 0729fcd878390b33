//! The embedding routes: OpenAI's `POST /v1/embeddings` (and
//! `/embeddings`), and the native `POST /embed`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use membatch::{EmbedOptions, Truncation};

#[allow(unused_imports)] // the OpenAPI attributes name them
use crate::error::{ApiError, OpenAiError, TeiError};
use crate::AppState;

/// OpenAI's embeddings request.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmbeddingsRequest {
    input: Input,
    /// Answered by the served model (another name is logged once, or a 404
    /// with `--strict-model-name`).
    #[serde(default)]
    model: Option<String>,
    /// `float` (default) or `base64` (little-endian float32).
    #[serde(default)]
    encoding_format: Option<String>,
    /// Keep the first N dimensions, normalised again (Matryoshka).
    #[serde(default)]
    dimensions: Option<i64>,
    /// The model's prompt before each input (an extension, as
    /// sentence-transformers' `prompt_name`); default: the server's.
    #[serde(default)]
    prompt_name: Option<String>,
    /// Accepted and ignored, as the API allows.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

/// `input`: a string, strings, or (refused) token ids, which are parsed
/// only to say why they are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    Tokens(#[allow(dead_code)] Vec<i64>),
    TokenBatches(#[allow(dead_code)] Vec<Vec<i64>>),
}

impl Input {
    /// The texts, or the 400 that says why there are none to embed.
    fn into_texts(self) -> Result<Vec<String>, ApiError> {
        let texts = match self {
            Input::One(t) => vec![t],
            Input::Many(t) => t,
            Input::Tokens(_) | Input::TokenBatches(_) => {
                return Err(ApiError::bad_request(
                    "token ids are not accepted: they belong to another model's tokenizer and \
                     this model cannot embed them; send the text itself",
                    Some("input"),
                ))
            }
        };
        if texts.is_empty() {
            return Err(ApiError::bad_request(
                "input is empty: send a string or a non-empty array of strings",
                Some("input"),
            ));
        }
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(ApiError::bad_request(
                format!("input[{i}] is an empty string, which cannot be embedded"),
                Some("input"),
            ));
        }
        Ok(texts)
    }
}

/// OpenAI's embeddings response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

/// One input's embedding.
#[derive(Debug, Serialize, ToSchema)]
struct EmbeddingData {
    object: &'static str,
    embedding: Embedding,
    index: usize,
}

/// Floats, or their little-endian float32 bytes in base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum Embedding {
    Float(Vec<f32>),
    Base64(String),
}

/// The request's tokens, as counted at admission.
#[derive(Debug, Serialize, ToSchema)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// Divides by the L2 norm (a zero vector stays zero).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Runs `texts` through the service as `options` say, within the request
/// timeout: admission on a blocking thread (it tokenizes them, once), then
/// the answer awaited. Returns the vectors and the tokens counted at
/// admission.
pub(crate) async fn run(
    app: &AppState,
    texts: Vec<String>,
    options: EmbedOptions,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let service = app.service.clone();
    let pending = crate::blocking(move || service.submit_with(&texts, &options)).await??;
    crate::await_answer(app, pending).await
}

/// Checks a request's `dimensions` against a model of `dimension`.
pub(crate) fn dimensions(
    requested: Option<i64>,
    dimension: usize,
) -> Result<Option<usize>, ApiError> {
    match requested {
        None => Ok(None),
        Some(d) if d >= 1 && d as u64 <= dimension as u64 => Ok(Some(d as usize)),
        Some(d) => Err(ApiError::bad_request(
            format!("dimensions {d} is not between 1 and the model's {dimension}"),
            Some("dimensions"),
        )),
    }
}

/// The options of a request that names `prompt_name` and `dimensions`.
fn options(prompt_name: Option<String>, dimensions: Option<usize>) -> EmbedOptions {
    let mut options = EmbedOptions::new();
    if let Some(name) = prompt_name {
        options = options.with_prompt_name(name);
    }
    if let Some(n) = dimensions {
        options = options.with_dimensions(n);
    }
    options
}

/// A valid OpenAI request: what to embed and how to answer.
#[derive(Debug)]
pub(crate) struct OpenAiJob {
    pub(crate) texts: Vec<String>,
    base64: bool,
    options: EmbedOptions,
    model: Option<String>,
}

/// Checks an OpenAI request against a model of `dimension`: 400s for
/// what cannot be served.
pub(crate) fn validate_openai(
    req: EmbeddingsRequest,
    dimension: usize,
) -> Result<OpenAiJob, ApiError> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("encoding_format {other:?} is not float or base64"),
                Some("encoding_format"),
            ))
        }
    };
    let dimensions = dimensions(req.dimensions, dimension)?;
    Ok(OpenAiJob {
        texts: req.input.into_texts()?,
        base64,
        options: options(req.prompt_name, dimensions),
        model: req.model,
    })
}

/// `POST /v1/embeddings` and `POST /embeddings`.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "OpenAI",
    summary = "Embeddings, as OpenAI's API answers them (also at /embeddings)",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One embedding per input, in order, of unit length",
            body = EmbeddingsResponse, headers(
                ("x-request-id" = String, description = "The request's id"),
                ("x-membatch-truncated" = usize, description = "Inputs cut to the model's sequence length"))),
        (status = 400, description = "Malformed, empty, token ids, a prompt or dimensions the model lacks", body = OpenAiError),
        (status = 401, description = "No valid API key", body = OpenAiError),
        (status = 404, description = "Another model, with --strict-model-name", body = OpenAiError),
        (status = 413, description = "A body, or more inputs or tokens, over the limits", body = OpenAiError),
        (status = 422, description = "A text that cannot be tokenized", body = OpenAiError),
        (status = 429, description = "The queue is full: retry after Retry-After", body = OpenAiError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
        (status = 500, description = "A failure of the server", body = OpenAiError),
        (status = 503, description = "Memory critical, the model unavailable, a timeout or shutdown", body = OpenAiError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn openai(
    State(app): State<Arc<AppState>>,
    body: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
    let job = validate_openai(req, app.service.info().dimension)?;
    app.check_model(job.model.as_deref())?;
    let (vectors, tokens) = run(&app, job.texts, job.options).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, mut v)| {
            // OpenAI's embeddings have unit length (and a shortened one is
            // normalised again).
            normalize(&mut v);
            let embedding = if job.base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Embedding::Float(v)
            };
            EmbeddingData {
                object: "embedding",
                embedding,
                index,
            }
        })
        .collect();
    let response = EmbeddingsResponse {
        object: "list",
        data,
        model: app.model_name.clone(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    Ok(Json(response))
}

/// The native request (text-embeddings-inference's): `{"inputs": "..." |
/// [...], "normalize": bool, "truncate": bool, "prompt_name": "...",
/// "dimensions": N}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmbedRequest {
    pub(crate) inputs: NativeInputs,
    /// Unit-length vectors (default true).
    #[serde(default = "yes")]
    normalize: bool,
    /// Cut a text longer than the model reads (default true); false
    /// refuses it (413).
    #[serde(default = "yes")]
    truncate: bool,
    /// The model's prompt before each input; default: the server's.
    #[serde(default)]
    prompt_name: Option<String>,
    /// Keep the first N dimensions (Matryoshka).
    #[serde(default)]
    dimensions: Option<i64>,
    /// Which end a long text is cut from: `Right` (keep the first tokens,
    /// the only one membatch does).
    #[serde(default)]
    pub(crate) truncation_direction: Option<String>,
}

/// Checks TEI's `truncation_direction`: `Right` (or `right`) is what
/// membatch does; `Left` is refused with TEI's validation status.
pub(crate) fn truncation_direction(direction: Option<&str>) -> Result<(), ApiError> {
    match direction {
        None | Some("Right" | "right") => Ok(()),
        Some(other) => Err(ApiError::unprocessable(
            format!(
                "truncation_direction {other:?} is not supported: membatch keeps a text's first \
                 tokens (Right)"
            ),
            Some("truncation_direction"),
        )),
    }
}

fn yes() -> bool {
    true
}

/// One text or many.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum NativeInputs {
    One(String),
    Many(Vec<String>),
}

/// `POST /embed`: `[[...], ...]`, one vector per input.
#[utoipa::path(
    post,
    path = "/embed",
    tag = "text-embeddings-inference",
    summary = "Embeddings, as text-embeddings-inference answers them (also at POST /)",
    request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input, in order", body = Vec<Vec<f32>>,
            headers(
                ("x-request-id" = String, description = "The request's id"),
                ("x-membatch-truncated" = usize, description = "Inputs cut to the model's sequence length"))),
        (status = 400, description = "Malformed or empty, a prompt or dimensions the model lacks", body = TeiError),
        (status = 401, description = "No valid API key", body = TeiError),
        (status = 413, description = "Over the limits; a text too long with truncate false; truncation_direction Left", body = TeiError),
        (status = 429, description = "The queue is full: retry after Retry-After", body = TeiError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
        (status = 500, description = "The model failed on the batch, or a caught panic (in OpenAI's shape)", body = TeiError),
        (status = 503, description = "Memory critical, the model unavailable, a timeout or shutdown", body = TeiError,
            headers(("retry-after" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn native(
    State(app): State<Arc<AppState>>,
    body: Result<Json<EmbedRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        let texts = native_texts(req.inputs)?;
        let truncation = if req.truncate {
            Truncation::Cut
        } else {
            Truncation::Refuse
        };
        truncation_direction(req.truncation_direction.as_deref())?;
        let dimensions = dimensions(req.dimensions, app.service.info().dimension)?;
        let options = options(req.prompt_name, dimensions).with_truncation(truncation);
        let (mut vectors, _) = run(&app, texts, options).await?;
        if req.normalize {
            vectors.iter_mut().for_each(|v| normalize(v));
        }
        Ok(Json(vectors))
    }
    .await;
    result.map_err(ApiError::native)
}

/// The native request's texts, or the 400 for none.
pub(crate) fn native_texts(inputs: NativeInputs) -> Result<Vec<String>, ApiError> {
    let texts = match inputs {
        NativeInputs::One(t) => vec![t],
        NativeInputs::Many(t) => t,
    };
    if texts.is_empty() {
        return Err(ApiError::bad_request("inputs is empty", Some("inputs")));
    }
    Ok(texts)
}
