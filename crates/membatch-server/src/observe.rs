//! What an operator sees of each request: its id (the caller's
//! `x-request-id`, or one made here), a span that every log line about it
//! carries (the service's worker names, in it, the batches that ran its
//! texts), one access line when it is answered (status, latency, and for
//! the embedding and rerank routes its texts, tokens and truncated
//! inputs), and the `x-request-id` and `x-membatch-truncated` headers.

use std::cell::Cell;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id header, read and answered.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How many of a request's inputs truncation cut to the model's sequence
/// length: on every answer of an embedding or rerank route.
pub const TRUNCATED: HeaderName = HeaderName::from_static("x-membatch-truncated");

/// The longest request id taken from a caller; a longer one is replaced.
const MAX_ID_LEN: usize = 128;

/// What an embedding or rerank route served, for the access line and the
/// truncation header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Served {
    pub(crate) texts: usize,
    pub(crate) tokens: usize,
    pub(crate) truncated: usize,
}

tokio::task_local! {
    /// Set by the route's answer (`await_answer`), read by [`observe`]:
    /// the handler runs in the middleware's task.
    static SERVED: Cell<Option<Served>>;
}

/// Records what the current request served (a no-op outside [`observe`]).
pub(crate) fn served(s: Served) {
    let _ = SERVED.try_with(|c| c.set(Some(s)));
}

/// The caller's request id when it is one a log line can carry whole
/// (1 to 128 visible ASCII characters), else a new UUID: a malformed id
/// (too long, control characters, spaces, non-ASCII) is replaced, never
/// echoed.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// The middleware: the id, the span, the access line, the headers.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let id = request_id(request.headers());
    let path = request.uri().path().to_string();
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %path,
    );
    let started = Instant::now();
    let (mut response, served) = SERVED
        .scope(Cell::new(None), async {
            let response = next.run(request).await;
            (response, SERVED.with(Cell::get))
        })
        .instrument(span.clone())
        .await;
    // Checked above: visible ASCII, or a UUID.
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if let Some(s) = served {
        response
            .headers_mut()
            .insert(TRUNCATED, HeaderValue::from(s.truncated));
    }
    let status = response.status().as_u16();
    let latency_ms = (started.elapsed().as_secs_f64() * 1e3 * 10.0).round() / 10.0;
    let _entered = span.enter();
    match served {
        Some(s) => tracing::info!(
            status,
            latency_ms,
            texts = s.texts,
            tokens = s.tokens,
            truncated = s.truncated,
            "answered"
        ),
        // Probes and scrapers ask every few seconds: their lines are debug.
        None if matches!(path.as_str(), "/health" | "/metrics") => {
            tracing::debug!(status, latency_ms, "answered");
        }
        None => tracing::info!(status, latency_ms, "answered"),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        h
    }

    #[test]
    fn a_good_id_is_kept_and_a_bad_one_replaced() {
        assert_eq!(request_id(&with(b"abc-123_XYZ.7")), "abc-123_XYZ.7");
        let made = request_id(&HeaderMap::new());
        assert_eq!(made.len(), 36, "a UUID: {made}");
        for bad in [
            &b"has space"[..],
            b"tab\there",
            &[b'a'; 129],
            b"caf\xc3\xa9",
        ] {
            let got = request_id(&with(bad));
            assert_eq!(got.len(), 36, "{bad:?} -> {got}");
            assert_ne!(got.as_bytes(), bad);
        }
        assert_eq!(request_id(&with(&[b'a'; 128])).len(), 128);
    }
}
