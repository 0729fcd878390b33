//! # membatch-server
//!
//! An OpenAI-compatible embedding server over membatch's
//! [`EmbedService`]: one resident model for every request, batches merged
//! across requests and sized by the memory budget, overload and memory
//! pressure answered with 429/503 and `Retry-After` instead of an OOM
//! kill, and a health check that tells the truth about the worker.
//!
//! [`router`] returns the whole API as an axum [`Router`] that other apps
//! can mount; the `membatch-server` binary serves it (see `docs/server.md`).
//!
//! | route | |
//! |---|---|
//! | `POST /v1/embeddings`, `POST /embeddings` | OpenAI's request and response shapes |
//! | `POST /embed` | `{"inputs", "normalize", "truncate"}` → `[[...]]` |
//! | `POST /rerank` | `{"query", "texts", "raw_scores", "return_text"}` → `[{"index", "score"}]`, best first (with a service [built with a reranker](membatch::service::EmbedServiceBuilder::reranker)) |
//! | `GET /health` | 200, or 503 when the worker failed |
//! | `GET /info` | model, dimension, limits, version |
//! | `GET /memory` | what membatch sees; `POST /memory/unload` frees the model |
//! | `GET /metrics` | Prometheus text |
//!
//! ```no_run
//! use std::time::Duration;
//! use membatch::service::EmbedService;
//! use membatch::Config;
//! use membatch_server::{router, AppState};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let service = EmbedService::load(&Config::from_env()?)?;
//! let state = AppState::new(service, "all-MiniLM-L6-v2").request_timeout(Duration::from_secs(30));
//! let app = axum::Router::new().nest("/embeddings-api", router(state, 8 << 20));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod embed;
pub mod error;
pub mod observe;
mod ollama;
mod openapi;
mod ops;
mod prometheus;
mod rerank;
mod tokenize;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use counts::Counts;
use membatch::service::{EmbedService, Pending};

pub use error::ApiError;
pub use rerank::MAX_RERANK_TEXTS;

/// The body of the fuzz target in `fuzz/`, compiled under `--cfg fuzzing`
/// (which `cargo fuzz` sets) and for this crate's tests, which run it over
/// its seeds and generated inputs in every `cargo test`. Not part of the API.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing {
    use axum::response::IntoResponse;

    /// Parses and validates `body` as each route would, for a model of
    /// `dimension`; every refusal must be a 4xx with a JSON body.
    pub fn requests(body: &[u8], dimension: usize) {
        let check = |e: crate::ApiError| {
            assert!(e.status.is_client_error(), "{e:?}");
            let _ = e.into_response();
        };
        if let Ok(req) = serde_json::from_slice::<crate::embed::EmbeddingsRequest>(body) {
            match crate::embed::validate_openai(req, dimension) {
                Ok(job) => {
                    assert!(!job.texts.is_empty() && job.texts.iter().all(|t| !t.is_empty()))
                }
                Err(e) => check(e),
            }
        }
        if let Ok(req) = serde_json::from_slice::<crate::embed::EmbedRequest>(body) {
            match crate::embed::native_texts(req.inputs) {
                Ok(texts) => assert!(!texts.is_empty()),
                Err(e) => check(e),
            }
        }
        if let Ok(req) = serde_json::from_slice::<crate::ollama::EmbedRequest>(body) {
            match crate::ollama::validate(req, dimension) {
                Ok((texts, options)) => {
                    assert!(!texts.is_empty());
                    assert!(options
                        .dimensions
                        .is_none_or(|n| (1..=dimension).contains(&n)));
                }
                Err(e) => check(e.ollama()),
            }
        }
        if let Ok(req) = serde_json::from_slice::<crate::rerank::CohereRequest>(body) {
            if let Err(e) = crate::rerank::check_shaped(req.documents.len(), req.top_n) {
                check(e.cohere());
            }
        }
        if let Ok(req) = serde_json::from_slice::<crate::rerank::JinaRequest>(body) {
            if let Err(e) = crate::rerank::check_shaped(req.documents.len(), req.top_n) {
                check(e.jina());
            }
        }
        if let Ok(req) = serde_json::from_slice::<crate::embed::EmbedRequest>(body) {
            if let Err(e) = crate::embed::truncation_direction(req.truncation_direction.as_deref())
            {
                check(e.native());
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn request_bodies_are_texts_or_a_4xx() {
            membatch_testkit::fuzz::run("server_request", 5_000, |body| super::requests(body, 384));
        }
    }
}

/// What every route shares.
#[derive(Debug)]
pub struct AppState {
    service: EmbedService,
    model_name: String,
    api_key: Option<String>,
    request_timeout: Duration,
    http: Counts,
    /// When the state was made: the served model's `created` in
    /// `/v1/models` (seconds since the epoch).
    created: u64,
    /// Whether a request naming another model is refused (404) rather
    /// than answered by the served one.
    strict_model_name: bool,
    /// The other model names requests sent, each warned about once.
    other_names: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The model's tokenizer, for `/tokenize` and `/decode`: loaded on
    /// their first call from `tokenizer_source`.
    tokenizer: std::sync::OnceLock<Arc<tokenizers::Tokenizer>>,
    tokenizer_source: Option<membatch::ModelSource>,
    /// How the weights are held, for `/info`.
    precision: membatch::Precision,
    /// The reranker's name, for the rerank routes' answers and checks.
    reranker_name: Option<String>,
    /// The model's pooling (`mean`, `cls`, ...), for TEI's `/info`.
    pooling: Option<String>,
    /// The origins browsers may call from (CORS); none: no CORS headers.
    cors_origins: Vec<String>,
}

impl AppState {
    /// The state of a server over `service`, answering as model
    /// `model_name`; no API key, requests time out after 60 s.
    pub fn new(service: EmbedService, model_name: impl Into<String>) -> Self {
        AppState {
            service,
            model_name: model_name.into(),
            api_key: None,
            request_timeout: Duration::from_secs(60),
            http: Counts::default(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            strict_model_name: false,
            other_names: Default::default(),
            tokenizer: std::sync::OnceLock::new(),
            tokenizer_source: None,
            precision: membatch::Precision::F32,
            reranker_name: None,
            pooling: None,
            cors_origins: Vec::new(),
        }
    }

    /// Lets browser apps from `origins` call the routes (CORS): preflight
    /// `OPTIONS` requests are answered before the API key is checked, and
    /// an answer to an origin not listed carries no CORS headers. `*`
    /// allows any origin. Default: none (no CORS headers at all).
    ///
    /// # Errors
    ///
    /// [`membatch::Error::InvalidConfig`] (naming `cors_allow_origin`) for
    /// an origin that is not a scheme and host (`https://app.example`).
    pub fn cors_allow_origins<S: AsRef<str>>(
        mut self,
        origins: impl IntoIterator<Item = S>,
    ) -> membatch::Result<Self> {
        let mut list = Vec::new();
        for origin in origins {
            let o = origin.as_ref().trim().trim_end_matches('/');
            let valid = o == "*"
                || (o.contains("://")
                    && !o.contains(char::is_whitespace)
                    && axum::http::HeaderValue::from_str(o).is_ok());
            if !valid {
                return Err(membatch::Error::InvalidConfig {
                    name: "cors_allow_origin".into(),
                    value: o.to_string(),
                    reason: "not an origin: a scheme and host (https://app.example), or *".into(),
                });
            }
            list.push(o.to_string());
        }
        self.cors_origins = list;
        Ok(self)
    }

    /// The name the reranker answers to on the rerank routes.
    #[must_use]
    pub fn reranker_name(mut self, name: impl Into<String>) -> Self {
        self.reranker_name = Some(name.into());
        self
    }

    /// The embedding model's pooling, as TEI's `/info` reports it
    /// (`mean`, `cls`, `max`, `lasttoken`).
    #[must_use]
    pub fn pooling(mut self, pooling: impl Into<String>) -> Self {
        self.pooling = Some(pooling.into());
        self
    }

    /// How the model's weights are held (`/info` says it). Default f32.
    #[must_use]
    pub fn precision(mut self, precision: membatch::Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Serves `/tokenize` and `/decode` with the `tokenizer.json` of the
    /// model at `source`, read on their first call (a few MB, outside the
    /// service's memory budget).
    #[must_use]
    pub fn tokenizer_source(mut self, source: membatch::ModelSource) -> Self {
        self.tokenizer_source = Some(source);
        self
    }

    /// The tokenizer, read now if it is not yet (blocking: call it off the
    /// async workers).
    pub(crate) fn tokenizer(&self) -> Result<Arc<tokenizers::Tokenizer>, ApiError> {
        if let Some(t) = self.tokenizer.get() {
            return Ok(t.clone());
        }
        let Some(source) = &self.tokenizer_source else {
            return Err(ApiError::bad_request(
                "this server shows no tokenizer (it was built without the model's source)",
                None,
            ));
        };
        let path = source.resolve()?.required("tokenizer.json")?;
        let tokenizer = Arc::new(tokenize::load(&path)?);
        Ok(self.tokenizer.get_or_init(|| tokenizer).clone())
    }

    /// Refuses a request that names another model than the served one
    /// with a 404 (`model_not_found`) instead of answering it with the
    /// served model.
    #[must_use]
    pub fn strict_model_name(mut self, strict: bool) -> Self {
        self.strict_model_name = strict;
        self
    }

    /// Checks the model a request names: the served model answers any
    /// name (a warning is logged once per other name), unless the state is
    /// strict.
    pub(crate) fn check_model(&self, asked: Option<&str>) -> Result<(), ApiError> {
        self.check_name(asked, &self.model_name)
    }

    /// As [`check_model`](Self::check_model), for the reranker.
    pub(crate) fn check_reranker(&self, asked: Option<&str>) -> Result<(), ApiError> {
        match &self.reranker_name {
            Some(served) => self.check_name(asked, served),
            None => Ok(()),
        }
    }

    fn check_name(&self, asked: Option<&str>, served: &str) -> Result<(), ApiError> {
        let Some(asked) = asked.filter(|a| *a != served) else {
            return Ok(());
        };
        if self.strict_model_name {
            return Err(ApiError::model_not_found(asked, served));
        }
        let mut seen = self.other_names.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 1024 && seen.insert(asked.to_string()) {
            tracing::warn!(
                asked,
                served,
                "a request names another model; the served model answers it (--strict-model-name refuses it)"
            );
        }
        Ok(())
    }

    /// Requires `Authorization: Bearer <key>` on every route but
    /// `/health`, `/metrics` and `/openapi.json` (401 otherwise, in the
    /// route's API's error shape).
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// How long a request may wait for its vectors (then 503, and its
    /// texts are skipped if they have not run).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The service behind the routes.
    pub fn service(&self) -> &EmbedService {
        &self.service
    }
}

/// Whether a route asks for the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `Authorization: Bearer <key>` when a key is set.
    Key,
    /// Open to all (health checks and scrapers).
    Open,
}

/// A route: its path, its method, its handler, who may call it.
struct Route {
    path: &'static str,
    /// `get` or `post`, as OpenAPI names them (the OpenAPI test compares).
    #[cfg_attr(not(test), allow(dead_code))]
    method: &'static str,
    handler: MethodRouter<Arc<AppState>>,
    access: Access,
}

/// A route whose `handler` answers `method` (`get` or `post`) only.
fn route<H, T>(path: &'static str, method: &'static str, handler: H, access: Access) -> Route
where
    H: axum::handler::Handler<T, Arc<AppState>>,
    T: 'static,
{
    let handler = match method {
        "get" => get(handler),
        _ => post(handler),
    };
    Route {
        path,
        method,
        handler,
        access,
    }
}

/// Every route of the server, once, as the router serves it and the
/// OpenAPI document lists it (a test holds the two equal). `/metrics`
/// labels responses by the path matched here.
fn routes() -> Vec<Route> {
    use Access::{Key, Open};
    vec![
        route("/v1/embeddings", "post", embed::openai, Key),
        route("/embeddings", "post", embed::openai, Key),
        route("/embed", "post", embed::native, Key),
        // What huggingface_hub's InferenceClient(base_url=...) posts to.
        route("/", "post", embed::native, Key),
        route("/rerank", "post", rerank::rerank, Key),
        route("/tokenize", "post", tokenize::tokenize, Key),
        route("/decode", "post", tokenize::decode, Key),
        route("/v2/rerank", "post", rerank::cohere, Key),
        route("/v1/rerank", "post", rerank::jina, Key),
        route("/api/embed", "post", ollama::embed_route, Key),
        route("/api/embeddings", "post", ollama::embeddings_route, Key),
        route("/api/tags", "get", ollama::tags, Key),
        route("/api/version", "get", ollama::version, Key),
        route("/info", "get", ops::info, Key),
        route("/v1/models", "get", ops::models, Key),
        // A hub model's name holds a slash.
        route("/v1/models/{*id}", "get", ops::model, Key),
        route("/memory", "get", ops::memory, Key),
        route("/memory/unload", "post", ops::unload, Key),
        route("/health", "get", ops::health, Open),
        route("/metrics", "get", ops::metrics, Open),
        route("/openapi.json", "get", openapi::serve, Open),
    ]
}

/// Every route of the server, with API-key checks, response counting,
/// panic catching (a JSON 500) and a `max_body_bytes` limit on request
/// bodies (a JSON 413).
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let state = Arc::new(state);
    let (mut keyed, mut open) = (Router::new(), Router::new());
    for r in routes() {
        match r.access {
            Access::Key => keyed = keyed.route(r.path, r.handler),
            Access::Open => open = open.route(r.path, r.handler),
        }
    }
    let keyed = keyed.route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    let cors = cors(&state.cors_origins);
    let app = keyed
        .merge(open)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                ApiError::internal(format!("internal error: {message}")).into_response()
            },
        ));
    // Outside the key check: a browser's preflight carries no key.
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    // Outermost: every request gets an id and an access line, 404s and
    // preflights included.
    app.layer(middleware::from_fn(observe::observe))
        .with_state(state)
}

/// The CORS layer for `origins` (`*`: any), or none when there are none.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method};
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked by `AppState::cors_allow_origins`.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            // Whatever headers the preflight asks for (client libraries
            // send their own, as OpenAI's x-stainless-*): no credentials
            // are allowed, so mirroring them opens nothing.
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([observe::REQUEST_ID, observe::TRUNCATED, header::RETRY_AFTER])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Awaits a submitted request's answer within the request timeout,
/// returning it with the tokens counted at admission. Dropping the
/// pending answer on a timeout gives the request up: its texts are skipped
/// if they have not run.
async fn await_answer(
    app: &AppState,
    pending: Pending,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let (tokens, truncated) = (pending.tokens(), pending.truncated());
    match tokio::time::timeout(app.request_timeout, pending).await {
        Ok(answer) => {
            let vectors = answer?;
            observe::served(observe::Served {
                texts: vectors.len(),
                tokens,
                truncated,
            });
            Ok((vectors, tokens))
        }
        Err(_) => Err(ApiError::timed_out(app.request_timeout)),
    }
}

/// Runs `f` (a submission to the service: it tokenizes) on a blocking
/// thread, inside the request's span, so the service's worker can log in
/// that span.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ApiError::internal(format!("admission failed: {e}")))
}

/// A number for each answer that wants an id (Cohere's `id`), unique
/// within the process.
pub(crate) fn request_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// 401 unless the request carries the API key (when one is set).
async fn require_key(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            // In the error shape of the API the path belongs to.
            let e = ApiError::unauthorized();
            let e = match request.uri().path() {
                p if p.starts_with("/api/") => e.ollama(),
                "/v2/rerank" => e.cohere(),
                "/v1/rerank" => e.jina(),
                "/" | "/embed" | "/rerank" | "/tokenize" | "/decode" => e.native(),
                _ => e,
            };
            return e.into_response();
        }
    }
    next.run(request).await
}

/// Counts each response by route and status for `/metrics`: the route is
/// the path the router matched (so the counters cannot grow with whatever
/// paths clients send), `other` when none did.
async fn count(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let response = next.run(request).await;
    app.http.add(route, response.status().as_u16());
    response
}

mod counts {
    //! Response counts under a std mutex (a handful of increments per
    //! request; nothing here needs a faster lock).

    use std::sync::Mutex;

    use crate::prometheus::HttpCounts;

    #[derive(Debug, Default)]
    pub(crate) struct Counts(Mutex<HttpCounts>);

    impl Counts {
        pub(crate) fn add(&self, route: String, status: u16) {
            let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
            *counts.entry((route, status)).or_default() += 1;
        }

        pub(crate) fn snapshot(&self) -> HttpCounts {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }
    }
}
