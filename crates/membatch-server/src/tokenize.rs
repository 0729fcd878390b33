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
use serde::Deserialize;
use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::error::ApiError;
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

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Inputs {
    One(String),
    Many(Vec<String>),
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenizeRequest {
    inputs: Inputs,
    #[serde(default = "yes")]
    add_special_tokens: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Ids {
    One(Vec<u32>),
    Many(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecodeRequest {
    ids: Ids,
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
pub(crate) async fn tokenize(
    State(app): State<Arc<AppState>>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
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
            let tokens: Vec<Value> = (0..encoding.len())
                .map(|i| {
                    let id = encoding.get_ids()[i];
                    let special = encoding.get_special_tokens_mask()[i] == 1;
                    let (start, stop) = encoding.get_offsets()[i];
                    if special {
                        json!({"id": id, "text": encoding.get_tokens()[i], "special": true, "start": null, "stop": null})
                    } else {
                        let piece = text.get(start..stop).unwrap_or(&encoding.get_tokens()[i]);
                        json!({"id": id, "text": piece, "special": false, "start": start, "stop": stop})
                    }
                })
                .collect();
            out.push(Value::Array(tokens));
        }
        Ok(out)
        })
        .await?;
        Ok(Json(Value::Array(out)))
    }
    .await;
    result.map_err(ApiError::native)
}

/// `POST /decode`.
pub(crate) async fn decode(
    State(app): State<Arc<AppState>>,
    body: Result<Json<DecodeRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
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
                out.push(Value::String(text));
            }
            Ok(out)
        })
        .await?;
        Ok(Json(Value::Array(out)))
    }
    .await;
    result.map_err(ApiError::native)
}
