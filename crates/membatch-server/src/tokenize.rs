//! text-embeddings-inference's `POST /tokenize` and `POST /decode`, over
//! the model's own `tokenizer.json` (read on their first call, a few MB;
//! the service's embedder keeps its tokenizer to itself).
//!
//! `/tokenize`: `{"inputs": "..." | [...], "add_special_tokens": true}` →
//! one list per input of `{"id", "text", "special", "start", "stop"}`
//! (`start`/`stop`: byte offsets into the input, `null` for special
//! tokens), untruncated. `/decode`: `{"ids": [...] | [[...]],
//! "skip_special_tokens": true}` → one string per list of ids.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;
use utoipa::ToSchema;

#[allow(unused_imports)] // the OpenAPI attributes name it
use crate::error::{ApiError, TeiError};
use crate::AppState;

/// The model's tokenizer as `/tokenize` and `/decode` use it: no
/// truncation, no padding.
pub(crate) fn load(path: &std::path::Path) -> membatch::Result<Tokenizer> {
    let failed = |e: tokenizers::Error| {
        let message = format!("{}: {e}", path.display());
        membatch::Error::Tokenization(membatch::BoxError::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from(message)))
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(failed)?;
    tokenizer.with_truncation(None).map_err(failed)?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// One text or many.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = TokenizeInputs)]
pub(crate) enum Inputs {
    One(String),
    Many(Vec<String>),
}

fn yes() -> bool {
    true
}

/// `POST /tokenize`'s request.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TokenizeRequest {
    inputs: Inputs,
    /// The model's special tokens around each input (default true).
    #[serde(default = "yes")]
    add_special_tokens: bool,
}

/// One token of an input.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Token {
    id: u32,
    /// The input's text the token covers (the token itself when special).
    text: String,
    special: bool,
    /// Byte offset of the token's start in the input; null when special.
    #[schema(required = true)]
    start: Option<usize>,
    /// Byte offset of the token's end in the input; null when special.
    #[schema(required = true)]
    stop: Option<usize>,
}

/// One list of ids or many.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Ids {
    One(Vec<u32>),
    Many(Vec<Vec<u32>>),
}

/// `POST /decode`'s request.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct DecodeRequest {
    ids: Ids,
    /// Leave the special tokens out (default true).
    #[serde(default = "yes")]
    skip_special_tokens: bool,
}

/// Runs `f` with the tokenizer on a blocking thread: tokenizing a body
/// of megabytes must not hold an async worker (`/health` answers on them).
async fn with_tokenizer<T: Send + 'static>(
    app: &Arc<AppState>,
    f: impl FnOnce(&Tokenizer) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&*app.tokenizer()?))
        .await
        .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))?
}

/// `POST /tokenize`.
#[utoipa::path(
    post,
    path = "/tokenize",
    tag = "text-embeddings-inference",
    summary = "The model's tokens of each input, untruncated",
    request_body = TokenizeRequest,
    responses(
        (status = 200, description = "One list of tokens per input", body = Vec<Vec<Token>>),
        (status = 400, description = "Malformed or empty", body = TeiError),
        (status = 401, description = "No valid API key", body = TeiError),
        (status = 413, description = "More inputs than one request may hold; an input that cannot be tokenized", body = TeiError),
        (status = 500, description = "A caught panic (in OpenAI's shape)", body = TeiError),
        (status = 503, description = "The model's tokenizer.json cannot be read", body = TeiError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn tokenize(
    State(app): State<Arc<AppState>>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<Token>>>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        let texts = match req.inputs {
            Inputs::One(t) => vec![t],
            Inputs::Many(t) => t,
        };
        if texts.is_empty() {
            return Err(ApiError::bad_request("inputs is empty", Some("inputs")));
        }
        let max = app.service.config().max_inputs_per_request();
        if texts.len() > max {
            return Err(ApiError::too_many_inputs(texts.len(), max, "inputs"));
        }
        let add_special_tokens = req.add_special_tokens;
        let out = with_tokenizer(&app, move |tokenizer| {
            let mut out = Vec::with_capacity(texts.len());
            for text in &texts {
                let encoding = tokenizer
                    .encode(text.as_str(), add_special_tokens)
                    .map_err(|e| ApiError::unprocessable(format!("cannot tokenize: {e}"), None))?;
                let tokens: Vec<Token> = (0..encoding.len())
                    .map(|i| {
                        let id = encoding.get_ids()[i];
                        let special = encoding.get_special_tokens_mask()[i] == 1;
                        let (start, stop) = encoding.get_offsets()[i];
                        let token = &encoding.get_tokens()[i];
                        if special {
                            Token {
                                id,
                                text: token.clone(),
                                special,
                                start: None,
                                stop: None,
                            }
                        } else {
                            let piece = text.get(start..stop).unwrap_or(token);
                            Token {
                                id,
                                text: piece.to_string(),
                                special,
                                start: Some(start),
                                stop: Some(stop),
                            }
                        }
                    })
                    .collect();
                out.push(tokens);
            }
            Ok(out)
        })
        .await?;
        Ok(Json(out))
    }
    .await;
    result.map_err(ApiError::native)
}

/// `POST /decode`.
#[utoipa::path(
    post,
    path = "/decode",
    tag = "text-embeddings-inference",
    summary = "The text of each list of ids",
    request_body = DecodeRequest,
    responses(
        (status = 200, description = "One string per list of ids", body = Vec<String>),
        (status = 400, description = "Malformed or empty, an id outside the vocabulary", body = TeiError),
        (status = 401, description = "No valid API key", body = TeiError),
        (status = 413, description = "More lists than one request may hold; ids that cannot be decoded", body = TeiError),
        (status = 500, description = "A caught panic (in OpenAI's shape)", body = TeiError),
        (status = 503, description = "The model's tokenizer.json cannot be read", body = TeiError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn decode(
    State(app): State<Arc<AppState>>,
    body: Result<Json<DecodeRequest>, JsonRejection>,
) -> Result<Json<Vec<String>>, ApiError> {
    let result = async {
        let Json(req) = body.map_err(|r| ApiError::from_rejection(&r))?;
        let lists = match req.ids {
            Ids::One(ids) => vec![ids],
            Ids::Many(lists) => lists,
        };
        if lists.is_empty() {
            return Err(ApiError::bad_request("ids is empty", Some("ids")));
        }
        let max = app.service.config().max_inputs_per_request();
        if lists.len() > max {
            return Err(ApiError::too_many_inputs(lists.len(), max, "ids"));
        }
        let skip_special_tokens = req.skip_special_tokens;
        let out = with_tokenizer(&app, move |tokenizer| {
            let vocab = tokenizer.get_vocab_size(true) as u32;
            let mut out = Vec::with_capacity(lists.len());
            for ids in &lists {
                if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
                    return Err(ApiError::bad_request(
                        format!("id {bad} is not in the model's vocabulary of {vocab}"),
                        Some("ids"),
                    ));
                }
                let text = tokenizer
                    .decode(ids, skip_special_tokens)
                    .map_err(|e| ApiError::unprocessable(format!("cannot decode: {e}"), None))?;
                out.push(text);
            }
            Ok(out)
        })
        .await?;
        Ok(Json(out))
    }
    .await;
    result.map_err(ApiError::native)
}
