//! `GET /openapi.json`: an OpenAPI 3.1 document of every route, generated
//! from the handlers' own request and response types and their error
//! bodies (utoipa's derives on them, `#[utoipa::path]` on the handlers).
//! `docs/openapi.json` is its committed copy: a test fails when the two
//! differ, so an API change is a visible decision.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "membatch-server",
        description = "Embeddings and reranking on CPU inside a memory limit: OpenAI's, \
            text-embeddings-inference's, Ollama's, Cohere's and Jina's APIs over one resident \
            model. Every answer carries `x-request-id`; embedding and rerank answers carry \
            `x-membatch-truncated`. With `--api-key`, every route but /health, /metrics and \
            /openapi.json needs `Authorization: Bearer KEY`."
    ),
    paths(
        crate::embed::openai,
        crate::embed::native,
        crate::rerank::rerank,
        crate::rerank::cohere,
        crate::rerank::jina,
        crate::tokenize::tokenize,
        crate::tokenize::decode,
        crate::ollama::embed_route,
        crate::ollama::embeddings_route,
        crate::ollama::tags,
        crate::ollama::version,
        crate::ops::info,
        crate::ops::models,
        crate::ops::model,
        crate::ops::memory,
        crate::ops::unload,
        crate::ops::health,
        crate::ops::metrics,
        serve,
    ),
    modifiers(&ApiKey, &Aliases)
)]
struct ApiDoc;

/// The bearer key of `--api-key`, which the keyed routes name.
struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, doc: &mut Document) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "api_key",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The routes that answer as another does: OpenAI's `/embeddings` as
/// `/v1/embeddings`, TEI's `POST /` as `/embed` (with operation ids of
/// their own, which OpenAPI wants unique).
struct Aliases;

/// Each alias, the path it answers as, and its operation id.
const ALIASES: [(&str, &str, &str); 2] = [
    ("/embeddings", "/v1/embeddings", "openai_without_v1"),
    ("/", "/embed", "native_at_root"),
];

impl Modify for Aliases {
    fn modify(&self, doc: &mut Document) {
        for (alias, of, id) in ALIASES {
            let Some(mut item) = doc.paths.paths.get(of).cloned() else {
                continue;
            };
            if let Some(op) = item.post.as_mut() {
                op.operation_id = Some(id.to_string());
            }
            doc.paths.paths.insert(alias.to_string(), item);
        }
    }
}

/// The document, pretty-printed (what `/openapi.json` serves and
/// `docs/openapi.json` holds).
pub(crate) fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut json = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot write the document: {e}\"}}"));
        json.push('\n');
        json
    })
}

/// `GET /openapi.json`: this server's OpenAPI document (open: no API key;
/// it holds nothing but the routes' shapes).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "Operations",
    summary = "This document: OpenAPI 3.1 (open: no API key)",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json"),
    )
)]
pub(crate) async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// The committed copy is the document; `MEMBATCH_BLESS=1` rewrites it.
    #[test]
    fn the_document_is_the_committed_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let now = document();
        if std::env::var_os("MEMBATCH_BLESS").is_some() {
            std::fs::write(&path, now).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == now,
            "the OpenAPI document differs from docs/openapi.json: if the API change is \
             meant, run `MEMBATCH_BLESS=1 cargo test --workspace --lib openapi` and commit \
             the file"
        );
    }

    /// Every route the router serves is in the document with its method,
    /// and the document has no other.
    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| matches!(k.as_str(), "get" | "post" | "put" | "delete"))
                    .map(move |m| (path.clone(), m.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = crate::routes()
            .into_iter()
            .map(|r| (r.path.replace("{*", "{"), r.method.to_string()))
            .collect();
        assert_eq!(documented, served);
        // Each keyed route names the key; the open ones do not.
        for r in crate::routes() {
            let op = &doc["paths"][r.path.replace("{*", "{")][r.method];
            let keyed = op["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(
                keyed,
                r.access == crate::Access::Key,
                "{} {}",
                r.method,
                r.path
            );
            assert!(
                op["responses"]["200"].is_object(),
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}
