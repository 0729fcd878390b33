//! [`ApiError`]: every failure as a status code and a JSON body (OpenAI's
//! `{"error": {...}}` envelope, or the native route's
//! `{"error", "error_type"}`), with `Retry-After` where waiting helps.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Which error body a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": {"message", "type", "param", "code"}}`, as OpenAI's API.
    OpenAi,
    /// `{"error": "...", "error_type": "..."}`, as the native `/embed`.
    Native,
    /// `{"error": "..."}`, as Ollama's API.
    Ollama,
    /// `{"message": "..."}`, as Cohere's API.
    Cohere,
    /// `{"detail": "..."}`, as Jina's API.
    Jina,
}

/// An HTTP error: status, body and, for overload and memory, `Retry-After`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// OpenAI's error type: `invalid_request_error`, `authentication_error`,
    /// `rate_limit_error`, `service_unavailable`, `server_error`.
    pub kind: &'static str,
    /// A machine-readable code (`overloaded`, `memory_critical`, …).
    pub code: Option<&'static str>,
    /// The request field at fault, when one is.
    pub param: Option<&'static str>,
    /// What went wrong, and what to do, in one line.
    pub message: String,
    /// When to try again.
    pub retry_after: Option<Duration>,
    /// Which body to write.
    pub style: ErrorStyle,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: None,
            param: None,
            message: message.into(),
            retry_after: None,
            style: ErrorStyle::OpenAi,
        }
    }

    /// 400: the request is malformed or empty.
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError {
            param,
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// 413: more inputs than one request may hold (`field` names them).
    pub fn too_many_inputs(n: usize, max: usize, field: &'static str) -> Self {
        ApiError {
            code: Some("too_many_inputs"),
            param: Some(field),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                // The library's wording for the same refusal
                // (`Error::RequestTooLarge`), so every route says it alike.
                format!("request too large: {n} {field}, at most {max} allowed per request"),
            )
        }
    }

    /// 401: no valid API key.
    pub fn unauthorized() -> Self {
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or invalid API key: send Authorization: Bearer <key>",
            )
        }
    }

    /// 422: a text cannot be embedded as sent.
    pub fn unprocessable(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError {
            param,
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                message,
            )
        }
    }

    /// 404: the request names a model this server does not serve.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        ApiError {
            code: Some("model_not_found"),
            param: Some("model"),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model {asked:?} does not exist: this server serves {served:?}"),
            )
        }
    }

    /// 500: a bug or an unexpected failure.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 503: no answer within the request timeout.
    pub fn timed_out(after: Duration) -> Self {
        ApiError {
            code: Some("timeout"),
            retry_after: Some(Duration::from_secs(1)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!(
                    "no answer within the request timeout ({} s); the request was given up",
                    after.as_secs_f64()
                ),
            )
        }
    }

    /// The same error with the native body, and text-embeddings-inference's
    /// status for it: a text that fails validation (too long with
    /// truncation off, untokenizable) is a 413, as TEI answers it.
    #[must_use]
    pub fn native(mut self) -> Self {
        self.style = ErrorStyle::Native;
        if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            self.status = StatusCode::PAYLOAD_TOO_LARGE;
        }
        self
    }

    /// The same error with Cohere's body.
    #[must_use]
    pub fn cohere(mut self) -> Self {
        self.style = ErrorStyle::Cohere;
        self
    }

    /// The same error with Jina's body.
    #[must_use]
    pub fn jina(mut self) -> Self {
        self.style = ErrorStyle::Jina;
        self
    }

    /// The same error with Ollama's body, and Ollama's status for it: a
    /// text it cannot embed as sent is a 400.
    #[must_use]
    pub fn ollama(mut self) -> Self {
        self.style = ErrorStyle::Ollama;
        if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            self.status = StatusCode::BAD_REQUEST;
        }
        self
    }

    /// A body the JSON extractor refused: 413 when it is too large, 400
    /// otherwise.
    pub fn from_rejection(rejection: &JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError {
                code: Some("body_too_large"),
                ..ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    format!("request body too large: {}", rejection.body_text()),
                )
            };
        }
        ApiError::bad_request(
            format!("malformed request: {}", rejection.body_text()),
            None,
        )
    }
}

impl From<membatch::Error> for ApiError {
    fn from(e: membatch::Error) -> Self {
        use membatch::Error as E;
        let message = e.report().to_string();
        let unavailable = |code, retry: Option<Duration>| ApiError {
            code: Some(code),
            retry_after: retry,
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                message.clone(),
            )
        };
        match &e {
            E::RequestTooLarge { limit, .. } => ApiError {
                code: Some(if *limit == "inputs" {
                    "too_many_inputs"
                } else {
                    "too_many_tokens"
                }),
                param: Some("input"),
                ..ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    message.clone(),
                )
            },
            E::TextTooLong { index, max_tokens } => ApiError {
                code: Some("text_too_long"),
                param: Some("inputs"),
                ..ApiError::unprocessable(
                    format!(
                        "inputs[{index}] has more tokens than the model's {max_tokens}; \
                         send truncate: true or a shorter text"
                    ),
                    None,
                )
            },
            E::Overloaded { retry_after, .. } => ApiError {
                code: Some("overloaded"),
                retry_after: Some(*retry_after),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    message.clone(),
                )
            },
            E::MemoryCritical { retry_after, .. } => {
                unavailable("memory_critical", Some(*retry_after))
            }
            E::MemoryPressure { .. } | E::BudgetTooSmall { .. } | E::PoolRefused { .. } => {
                unavailable("memory_pressure", Some(Duration::from_secs(1)))
            }
            E::ModelTooLarge { .. } | E::ModelFile { .. } | E::Hub { .. } => {
                unavailable("model_unavailable", Some(Duration::from_secs(5)))
            }
            E::TimedOut { .. } => unavailable("timeout", Some(Duration::from_secs(1))),
            E::Closed => unavailable("shutting_down", None),
            E::WorkerFailed { .. } => unavailable("worker_failed", None),
            // Within a request, a setting refused is one of the request's
            // own options (a prompt the model lacks, dimensions it does not
            // have): the caller's 400, naming the field.
            E::InvalidConfig { name, .. } => ApiError::bad_request(
                message.clone(),
                match name.as_str() {
                    "prompt_name" => Some("prompt_name"),
                    "dimensions" => Some("dimensions"),
                    _ => None,
                },
            ),
            E::Tokenization(_) => ApiError {
                code: Some("tokenization"),
                param: Some("input"),
                ..ApiError::unprocessable(message.clone(), None)
            },
            _ => ApiError {
                code: Some("inference"),
                ..ApiError::internal(message.clone())
            },
        }
    }
}

/// OpenAI's error body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiError {
    error: OpenAiErrorDetail,
}

/// OpenAI's error: what went wrong, its type, the field at fault, a code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorDetail {
    message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `service_unavailable`, `server_error`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[schema(required = true)]
    param: Option<&'static str>,
    /// `too_many_inputs`, `overloaded`, `memory_critical`, `model_not_found`, ...
    #[schema(required = true)]
    code: Option<&'static str>,
}

/// text-embeddings-inference's error body (the native routes).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TeiError {
    error: String,
    /// The code (`too_many_inputs`, `text_too_long`, ...) or the type.
    error_type: &'static str,
}

/// Ollama's error body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OllamaError {
    error: String,
}

/// Cohere's error body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CohereError {
    message: String,
}

/// Jina's error body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JinaError {
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let message = self.message;
        let mut response = match self.style {
            ErrorStyle::OpenAi => (
                status,
                axum::Json(OpenAiError {
                    error: OpenAiErrorDetail {
                        message,
                        kind: self.kind,
                        param: self.param,
                        code: self.code,
                    },
                }),
            )
                .into_response(),
            ErrorStyle::Native => (
                status,
                axum::Json(TeiError {
                    error: message,
                    error_type: self.code.unwrap_or(self.kind),
                }),
            )
                .into_response(),
            ErrorStyle::Ollama => {
                (status, axum::Json(OllamaError { error: message })).into_response()
            }
            ErrorStyle::Cohere => (status, axum::Json(CohereError { message })).into_response(),
            ErrorStyle::Jina => (status, axum::Json(JinaError { detail: message })).into_response(),
        };
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up, at least one.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
