//! The axum handler of `docs/service.md`, compiled and run: an
//! `EmbedService` in a router's state, awaited in a handler.

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use membatch::service::EmbedService;

// The snippet, as docs/service.md shows it.
async fn embed(
    State(service): State<EmbedService>,
    Json(texts): Json<Vec<String>>,
) -> Result<Json<Vec<Vec<f32>>>, (StatusCode, String)> {
    service.embed_async(&texts).await.map(Json).map_err(|e| {
        let status = match e {
            membatch::Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            membatch::Error::MemoryCritical { .. } | membatch::Error::Closed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, e.report().to_string())
    })
}

#[test]
fn the_documented_handler_serves_embeddings() {
    let dir = membatch_testkit::tiny::tiny_model_dir(&membatch_testkit::tiny::Tiny::default());
    let model = membatch::BertEmbedder::load(membatch::ModelSource::dir(dir.path())).unwrap();
    let service = EmbedService::builder(model).spawn().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(async {
        let app = Router::new()
            .route("/embed", post(embed))
            .with_state(service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });
    let response = ureq::post(&format!("{base}/embed"))
        .set("content-type", "application/json")
        .send_string(r#"["hello world", "the quick brown fox"]"#)
        .unwrap();
    let vectors: Vec<Vec<f32>> = serde_json::from_str(&response.into_string().unwrap()).unwrap();
    assert_eq!((vectors.len(), vectors[0].len()), (2, 32));
}
