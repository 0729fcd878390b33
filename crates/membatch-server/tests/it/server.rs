//! The `membatch-server` binary over HTTP on loopback: every route, every
//! status code, base64 and `dimensions`, concurrent callers against the
//! library's own output, unload and reload, a failing worker, shutdown.
//! Most tests run a tiny random model; parity, a full queue and an
//! unloadable model run the real one (`#[ignore]`d in a plain `cargo test`,
//! run by scripts/test.sh).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use membatch::{BertEmbedder, Embedder, ModelSource};
use membatch_testkit::tiny::{tiny_model_dir, Tiny};
use serde_json::{json, Value};

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts the binary with `args` (plus `--port 0`) and waits for its
    /// "listening" line.
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Server::start_piped(args, envs, Stdio::inherit())
    }

    fn start_piped(args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_membatch-server"));
        cmd.args(["--port", "0"]).args(args);
        // Every setting's variables, and the server's key.
        for s in membatch::settings::all() {
            for var in std::iter::once(s.env()).chain(s.aliases().iter().copied()) {
                cmd.env_remove(var);
            }
        }
        cmd.env_remove("MEMBATCH_API_KEY");
        cmd.env("RUST_LOG", "warn").env("RUST_BACKTRACE", "0");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("membatch-server listening on ")
            .unwrap_or_else(|| panic!("no listening line: {line:?}"))
            .to_string();
        Server { child, base }
    }

    /// As [`start`](Self::start), with its log (stderr) collected.
    fn start_logged(
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> (Self, std::sync::Arc<std::sync::Mutex<String>>) {
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut server = Server::start_piped(args, envs, Stdio::piped());
        let stderr = server.child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        (server, log)
    }

    /// A server over a fresh tiny model.
    fn tiny(args: &[&str]) -> (Self, tempfile::TempDir) {
        let dir = tiny_model_dir(&Tiny::default());
        let mut all = vec!["--model", dir.path().to_str().unwrap()];
        all.extend(args);
        (Server::start(&all, &[]), dir)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until /health reports the model loaded (the startup load runs
    /// in the background and holds a queue place until it is done).
    fn wait_loaded(&self) {
        let started = Instant::now();
        while get(&self.url("/health")).json()["model"] != "loaded" {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the model did not load within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, `Retry-After` header, every header, JSON (or
/// text) body.
#[derive(Debug)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The header `name` (lower case), if the response has it.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|n| {
            let v = response.header(&n)?.to_string();
            Some((n.to_ascii_lowercase(), v))
        })
        .collect();
    Reply {
        status: response.status(),
        retry_after: response.header("retry-after").map(String::from),
        headers,
        body: response.into_string().unwrap(),
    }
}

/// `method url` with `headers` and, when given, a JSON `body`.
fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(60));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    reply(match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    })
}

fn post(url: &str, body: &str, key: Option<&str>) -> Reply {
    let mut req = ureq::post(url)
        .timeout(Duration::from_secs(120))
        .set("content-type", "application/json");
    if let Some(k) = key {
        req = req.set("authorization", &format!("Bearer {k}"));
    }
    reply(req.send_string(body))
}

fn get(url: &str) -> Reply {
    reply(ureq::get(url).timeout(Duration::from_secs(30)).call())
}

/// Asserts an OpenAI error envelope with `status` and returns it.
fn openai_error(r: &Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{r:?}");
    let e = &r.json()["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{r:?}"
    );
    assert!(e["type"].is_string(), "{r:?}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{r:?}");
    e.clone()
}

fn vectors(body: &Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i);
            assert_eq!(d["object"], "embedding");
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn real_model_dir() -> String {
    match ModelSource::default_model() {
        ModelSource::Dir(p) => p.display().to_string(),
        other => panic!(
            "the real model weights are required (scripts/fetch-model.sh); found only {other}"
        ),
    }
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn the_openai_route_matches_the_library_for_concurrent_callers() {
    let model = real_model_dir();
    let server = Server::start(&["--model", &model], &[]);
    let library = BertEmbedder::load(ModelSource::parse(&model)).unwrap();
    let corpus = membatch_testkit::corpus::mixed_corpus(96, 5);
    let url = server.url("/v1/embeddings");
    std::thread::scope(|s| {
        for (i, chunk) in corpus.chunks(3).enumerate() {
            let (url, library) = (&url, &library);
            s.spawn(move || {
                let body = json!({"input": chunk, "model": "mini"}).to_string();
                let r = post(url, &body, None);
                assert_eq!(r.status, 200, "{r:?}");
                let v = r.json();
                assert_eq!(v["object"], "list");
                assert_eq!(
                    v["model"], "all-MiniLM-L6-v2",
                    "the served model, not the asked one"
                );
                let got = vectors(&v);
                let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let want = library.embed(&texts).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    let d = g
                        .iter()
                        .zip(w)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(d < 1e-5, "caller {i}: {d}");
                }
                let tokens: usize = library
                    .tokenize(&texts)
                    .unwrap()
                    .iter()
                    .map(|t| t.len())
                    .sum();
                assert_eq!(v["usage"]["prompt_tokens"], tokens);
                assert_eq!(v["usage"]["total_tokens"], tokens);
            });
        }
    });
    // /embeddings is the same route.
    let r = post(
        &server.url("/embeddings"),
        r#"{"input": "hello", "model": "m"}"#,
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn base64_and_dimensions() {
    let (server, _model) = Server::tiny(&[]);
    let url = server.url("/v1/embeddings");
    let floats = vectors(
        &post(
            &url,
            r#"{"input": ["the quick brown fox"], "model": "m"}"#,
            None,
        )
        .json(),
    );
    let r = post(
        &url,
        r#"{"input": ["the quick brown fox"], "model": "m", "encoding_format": "base64"}"#,
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let encoded = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // The same text in another batch may differ in the last bits (the
    // products' blocking follows the batch's size); the bytes are exact.
    assert_eq!(decoded.len(), floats[0].len());
    for (d, f) in decoded.iter().zip(&floats[0]) {
        assert!((d - f).abs() < 1e-6, "little-endian f32 bytes: {d} vs {f}");
    }
    assert!((norm(&floats[0]) - 1.0).abs() < 1e-5);

    let r = post(
        &url,
        r#"{"input": "the quick brown fox", "model": "m", "dimensions": 8}"#,
        None,
    );
    let short = &vectors(&r.json())[0];
    assert_eq!(short.len(), 8);
    assert!((norm(short) - 1.0).abs() < 1e-5, "re-normalised");
    let cos: f32 = short.iter().zip(&floats[0]).map(|(a, b)| a * b).sum();
    assert!(cos > 0.0, "the same direction as the full vector's head");
    for bad in [0, 33, -1] {
        let body = format!(r#"{{"input": "x", "model": "m", "dimensions": {bad}}}"#);
        let e = openai_error(&post(&url, &body, None), 400);
        assert_eq!(e["param"], "dimensions");
    }
    let e = openai_error(
        &post(&url, r#"{"input": "x", "encoding_format": "bytes"}"#, None),
        400,
    );
    assert_eq!(e["param"], "encoding_format");
}

/// A tiny model with a `query` and a `document` prompt.
fn prompted_model() -> tempfile::TempDir {
    let dir = tiny_model_dir(&Tiny::default());
    membatch_testkit::tiny::write(
        dir.path(),
        "config_sentence_transformers.json",
        r#"{"prompts": {"query": "the quick ", "document": "a man "}, "default_prompt_name": null}"#,
    );
    dir
}

/// `/embed`'s vectors.
fn native_vectors(r: &Reply) -> Vec<Vec<f32>> {
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn prompts_and_dimensions_per_request_and_the_servers_default_prompt() {
    let model = prompted_model();
    let dir = model.path().to_str().unwrap();
    // The server runs the model unnormalised and normalises per route:
    // `"normalize": false` gives the model's raw vectors.
    let library = BertEmbedder::builder()
        .source(ModelSource::dir(model.path()))
        .normalize(false)
        .build()
        .unwrap();
    let unit = BertEmbedder::load(ModelSource::dir(model.path())).unwrap();
    let text = ["hello world"];
    let query = library.embed_with_prompt("query", &text).unwrap();
    let document = library.embed_with_prompt("document", &text).unwrap();
    let plain = library.embed(&text).unwrap();
    assert_ne!(query, plain);

    let server = Server::start(&["--model", dir], &[]);
    let embed = server.url("/embed");
    // Bit for bit: one text, the same pass, the model's own normalisation.
    let native = |body: Value| native_vectors(&post(&embed, &body.to_string(), None));
    assert_eq!(
        native(json!({"inputs": "hello world", "normalize": false})),
        plain
    );
    assert_eq!(
        native(json!({"inputs": "hello world", "normalize": false, "prompt_name": "query"})),
        query
    );
    let openai = vectors(
        &post(
            &server.url("/v1/embeddings"),
            &json!({"input": "hello world", "prompt_name": "document"}).to_string(),
            None,
        )
        .json(),
    );
    let unit_document = unit.embed_with_prompt("document", &text).unwrap();
    for (a, b) in openai[0].iter().zip(&unit_document[0]) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
    // Matryoshka on the native route: the library's cut, normalised again.
    let cut = unit
        .embed_with(&text, &membatch::EmbedOptions::new().with_dimensions(8))
        .unwrap();
    let short = native(json!({"inputs": "hello world", "dimensions": 8}));
    assert_eq!(short[0].len(), 8);
    for (a, b) in short[0].iter().zip(&cut[0]) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }

    // An unknown prompt, or dimensions the model lacks: 400s naming them.
    let e = openai_error(
        &post(
            &server.url("/v1/embeddings"),
            r#"{"input": "x", "prompt_name": "passage"}"#,
            None,
        ),
        400,
    );
    assert_eq!(e["param"], "prompt_name");
    assert!(
        e["message"].as_str().unwrap().contains("document, query"),
        "{e}"
    );
    for body in [
        r#"{"inputs": "x", "prompt_name": "passage"}"#,
        r#"{"inputs": "x", "dimensions": 0}"#,
        r#"{"inputs": "x", "dimensions": 33}"#,
    ] {
        let r = post(&embed, body, None);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(r.json()["error"].is_string(), "native error shape: {r:?}");
    }
    drop(server);

    // The server's default prompt: a request without one gets it.
    let server = Server::start(&["--model", dir, "--default-prompt-name", "query"], &[]);
    let embed = server.url("/embed");
    let native = |body: Value| native_vectors(&post(&embed, &body.to_string(), None));
    assert_eq!(
        native(json!({"inputs": "hello world", "normalize": false})),
        query
    );
    assert_eq!(
        native(json!({"inputs": "hello world", "normalize": false, "prompt_name": "document"})),
        document
    );
}

#[test]
fn bad_inputs_are_400s_in_the_openai_envelope() {
    let (server, _model) = Server::tiny(&[]);
    let url = server.url("/v1/embeddings");
    for (body, why) in [
        (r#"{"input": [], "model": "m"}"#, "empty"),
        (r#"{"input": "", "model": "m"}"#, "empty string"),
        (r#"{"input": ["a", ""], "model": "m"}"#, "input[1]"),
        (r#"{"input": [1, 2, 3], "model": "m"}"#, "token ids"),
        (r#"{"input": [[1, 2], [3]], "model": "m"}"#, "token ids"),
        (r#"{"input": ["a", 1], "model": "m"}"#, "malformed"),
        (r#"{"model": "m"}"#, "malformed"),
        (r#"{"input": "a""#, "malformed"),
    ] {
        let e = openai_error(&post(&url, body, None), 400);
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
}

#[test]
fn the_native_route_normalises_on_request_and_refuses_truncation_when_asked() {
    let (server, _model) = Server::tiny(&[]);
    let url = server.url("/embed");
    let r = post(&url, r#"{"inputs": ["hello world", "the lazy dog"]}"#, None);
    assert_eq!(r.status, 200, "{r:?}");
    let v: Vec<Vec<f32>> = serde_json::from_str(&r.body).unwrap();
    assert_eq!((v.len(), v[0].len()), (2, 32));
    assert!((norm(&v[0]) - 1.0).abs() < 1e-5);
    let raw: Vec<Vec<f32>> = serde_json::from_str(
        &post(
            &url,
            r#"{"inputs": "hello world", "normalize": false}"#,
            None,
        )
        .body,
    )
    .unwrap();
    assert!((norm(&raw[0]) - 1.0).abs() > 1e-3, "pooled, not normalised");
    let cos = v[0].iter().zip(&raw[0]).map(|(a, b)| a * b).sum::<f32>() / norm(&raw[0]);
    assert!((cos - 1.0).abs() < 1e-5, "the same direction");
    // The tiny model takes 24 tokens.
    let long = "hello ".repeat(40);
    let body = json!({"inputs": long, "truncate": false}).to_string();
    let r = post(&url, &body, None);
    assert_eq!(r.status, 413, "TEI's status for a validation error: {r:?}");
    let e = r.json();
    assert!(e["error"].as_str().unwrap().contains("24"), "{e}");
    assert!(e["error_type"].is_string());
    let body = json!({"inputs": long}).to_string();
    assert_eq!(post(&url, &body, None).status, 200, "truncated by default");
    let r = post(&url, r#"{"inputs": []}"#, None);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string(), "native error shape");
}

#[test]
fn too_large_bodies_and_requests_are_413s_with_json_bodies() {
    let (server, _model) = Server::tiny(&["--max-body", "1KiB", "--max-inputs-per-request", "2"]);
    let url = server.url("/v1/embeddings");
    let big = json!({"input": "x".repeat(2000)}).to_string();
    let e = openai_error(&post(&url, &big, None), 413);
    assert_eq!(e["code"], "body_too_large");
    let e = openai_error(&post(&url, r#"{"input": ["a", "b", "c"]}"#, None), 413);
    assert_eq!(e["code"], "too_many_inputs");
    assert_eq!(post(&url, r#"{"input": ["a", "b"]}"#, None).status, 200);
    // A list over the limit on every other route that takes one: a 413 in
    // that API's own shape (TEI's `error` and `error_type`, Ollama's
    // `error` alone), and the server goes on.
    for (path, body, keys) in [
        (
            "/embed",
            r#"{"inputs": ["a", "b", "c"]}"#,
            &["error", "error_type"][..],
        ),
        (
            "/",
            r#"{"inputs": ["a", "b", "c"]}"#,
            &["error", "error_type"][..],
        ),
        (
            "/tokenize",
            r#"{"inputs": ["a", "b", "c"]}"#,
            &["error", "error_type"][..],
        ),
        (
            "/decode",
            r#"{"ids": [[101], [102], [103]]}"#,
            &["error", "error_type"][..],
        ),
        (
            "/api/embed",
            r#"{"input": ["a", "b", "c"]}"#,
            &["error"][..],
        ),
    ] {
        let r = post(&server.url(path), body, None);
        assert_eq!(r.status, 413, "{path}: {r:?}");
        let e = r.json();
        let mut got: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, keys, "{path}: {e}");
        assert!(
            e["error"].as_str().unwrap().contains("at most 2 allowed"),
            "{path}: {e}"
        );
    }
    assert_eq!(get(&server.url("/health")).status, 200);
}

#[test]
fn an_api_key_guards_every_route_but_health_and_metrics() {
    let (server, _model) = Server::tiny(&["--api-key", "s3cret"]);
    let url = server.url("/v1/embeddings");
    let body = r#"{"input": "hi"}"#;
    let e = openai_error(&post(&url, body, None), 401);
    assert_eq!(e["type"], "authentication_error");
    assert_eq!(post(&url, body, Some("wrong")).status, 401);
    assert_eq!(post(&url, body, Some("s3cret")).status, 200);
    assert_eq!(get(&server.url("/info")).status, 401);
    assert_eq!(get(&server.url("/health")).status, 200);
    assert_eq!(get(&server.url("/metrics")).status, 200);
    // The other APIs' routes too (Ollama's client sends the key from
    // OLLAMA_API_KEY).
    // Each in its API's error shape.
    for (path, field) in [
        ("/", "error_type"),
        ("/embed", "error_type"),
        ("/tokenize", "error_type"),
        ("/decode", "error_type"),
        ("/api/embed", "error"),
        ("/api/embeddings", "error"),
        ("/v2/rerank", "message"),
        ("/v1/rerank", "detail"),
    ] {
        let r = post(&server.url(path), "{}", None);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.json()[field].is_string(), "{path}: {r:?}");
    }
    for path in ["/api/tags", "/api/version", "/v1/models", "/v1/models/x"] {
        assert_eq!(get(&server.url(path)).status, 401, "{path}");
    }
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_full_queue_is_a_429_with_retry_after() {
    let model = real_model_dir();
    let server = Server::start(
        &["--model", &model],
        &[("MEMBATCH_MAX_QUEUED_REQUESTS", "1")],
    );
    let url = server.url("/v1/embeddings");
    // The startup load finishes before the queue is filled below.
    server.wait_loaded();
    assert_eq!(post(&url, r#"{"input": "warm"}"#, None).status, 200);
    let long: Vec<String> = membatch_testkit::corpus::uniform_corpus(48, 300, 1);
    let busy = json!({ "input": long }).to_string();
    std::thread::scope(|s| {
        // One long request runs; the queue holds one more; the rest are refused.
        let running = s.spawn(|| post(&url, &busy, None));
        std::thread::sleep(Duration::from_millis(300));
        let queued = s.spawn(|| post(&url, r#"{"input": "queued"}"#, None));
        std::thread::sleep(Duration::from_millis(100));
        let refused = post(&url, r#"{"input": "refused"}"#, None);
        let e = openai_error(&refused, 429);
        assert_eq!(e["code"], "overloaded");
        assert!(
            refused
                .retry_after
                .as_deref()
                .is_some_and(|s| s.parse::<u64>().unwrap() >= 1),
            "{refused:?}"
        );
        assert_eq!(running.join().unwrap().status, 200);
        assert_eq!(queued.join().unwrap().status, 200);
    });
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn critical_memory_and_an_unloadable_model_are_503s_with_retry_after() {
    let dir = tiny_model_dir(&Tiny::default());
    let model = dir.path().to_str().unwrap();
    // A budget the process alone already exceeds: critical.
    let server = Server::start(
        &["--model", model, "--lazy", "--memory-budget", "4MiB"],
        &[],
    );
    let r = post(&server.url("/v1/embeddings"), r#"{"input": "hi"}"#, None);
    let e = openai_error(&r, 503);
    assert_eq!(e["code"], "memory_critical");
    assert!(r.retry_after.is_some(), "{r:?}");
    drop(server);
    // A budget with room for requests but not for loading the real model.
    let server = Server::start(
        &[
            "--model",
            &real_model_dir(),
            "--lazy",
            "--memory-budget",
            "60MiB",
        ],
        &[],
    );
    let r = post(&server.url("/v1/embeddings"), r#"{"input": "hi"}"#, None);
    let e = openai_error(&r, 503);
    assert_eq!(e["code"], "model_unavailable", "{r:?}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not enough memory to load"),
        "{e}"
    );
    assert!(r.retry_after.is_some());
    let h = get(&server.url("/health"));
    assert_eq!(
        h.status, 503,
        "a model that cannot load is not healthy: {h:?}"
    );
}

/// An embedder whose batches panic when they hold a text with `BOOM`.
struct PanicOnBoom;

/// The id `PanicOnBoom` gives a text holding `BOOM`.
const BOOM: u32 = u32::MAX;

impl Embedder for PanicOnBoom {
    fn info(&self) -> membatch::ModelInfo {
        membatch::ModelInfo::new(4, 16)
    }
    fn tokenize(&self, texts: &[&str]) -> membatch::Result<Vec<membatch::Tokens>> {
        Ok(texts
            .iter()
            .map(|t| membatch::Tokens::new(vec![if t.contains("BOOM") { BOOM } else { 1 }]))
            .collect())
    }
    fn embed_tokens(&self, batch: &[&membatch::Tokens]) -> membatch::Result<Vec<Vec<f32>>> {
        assert!(
            batch.iter().all(|t| t.ids() != [BOOM]),
            "a test asked this batch to panic"
        );
        Ok(vec![vec![0.5; 4]; batch.len()])
    }
}

/// The server's router over `embedder`, served in-process on a free port.
struct InProcess {
    base: String,
    _runtime: tokio::runtime::Runtime,
}

impl InProcess {
    fn start(embedder: impl Embedder + 'static, config: membatch::service::ServiceConfig) -> Self {
        let service = membatch::service::EmbedService::builder(embedder)
            .config(config)
            .spawn()
            .unwrap();
        let app = membatch_server::router(membatch_server::AppState::new(service, "fake"), 1 << 20);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        InProcess {
            base,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[test]
fn a_panicking_batch_is_a_500_and_a_failed_worker_turns_health_to_503() {
    let config = membatch::service::ServiceConfig::builder()
        .max_consecutive_panics(2)
        .build()
        .unwrap();
    let server = InProcess::start(PanicOnBoom, config);
    let url = server.url("/v1/embeddings");
    let e = openai_error(&post(&url, r#"{"input": "BOOM"}"#, None), 500);
    assert!(e["message"].as_str().unwrap().contains("panicked"), "{e}");
    assert_eq!(
        get(&server.url("/health")).status,
        200,
        "one panic is contained"
    );
    assert_eq!(post(&url, r#"{"input": "fine"}"#, None).status, 200);
    openai_error(&post(&url, r#"{"input": "BOOM again"}"#, None), 500);
    openai_error(&post(&url, r#"{"input": "BOOM and again"}"#, None), 500);
    // Two in a row: the worker gave up, and says so.
    let h = get(&server.url("/health"));
    assert_eq!(h.status, 503, "{h:?}");
    assert_eq!(h.json()["status"], "unhealthy");
    let e = openai_error(&post(&url, r#"{"input": "anyone?"}"#, None), 503);
    assert_eq!(e["code"], "worker_failed");
    let metrics = get(&server.url("/metrics")).body;
    assert!(metrics.contains("membatch_serving 0"), "{metrics}");
}

#[test]
fn unload_frees_the_model_and_the_next_request_loads_it() {
    let (server, _model) = Server::tiny(&[]);
    let url = server.url("/v1/embeddings");
    assert_eq!(post(&url, r#"{"input": "load"}"#, None).status, 200);
    assert_eq!(get(&server.url("/health")).json()["model"], "loaded");
    let r = post(&server.url("/memory/unload"), "", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["freed"], true);
    assert_eq!(
        get(&server.url("/memory")).json()["model_state"],
        "unloaded"
    );
    assert_eq!(
        get(&server.url("/health")).status,
        200,
        "unloaded is healthy"
    );
    assert_eq!(post(&url, r#"{"input": "reload"}"#, None).status, 200);
    assert_eq!(get(&server.url("/health")).json()["model"], "loaded");
}

#[test]
fn info_memory_and_metrics_say_what_they_promise() {
    // Lazy: no warm-up request in the counts.
    let (server, _model) = Server::tiny(&["--max-inputs-per-request", "7", "--lazy"]);
    assert_eq!(
        post(
            &server.url("/v1/embeddings"),
            r#"{"input": ["a", "b"]}"#,
            None
        )
        .status,
        200
    );
    let info = get(&server.url("/info")).json();
    assert_eq!(info["dimension"], 32);
    assert_eq!(info["max_seq_length"], 24);
    assert_eq!(info["max_inputs_per_request"], 7);
    assert!(info["version"].is_string() && info["model"].is_string());
    // text-embeddings-inference's fields beside membatch's.
    assert_eq!(info["model_id"], info["model"]);
    assert_eq!(info["max_input_length"], info["max_seq_length"]);
    assert_eq!(info["model_dtype"], "float32");
    assert!(info["max_client_batch_size"].as_u64().unwrap() > 0);
    let memory = get(&server.url("/memory")).json();
    for key in [
        "rss_bytes",
        "effective_limit_bytes",
        "budget_bytes",
        "figure_bytes",
        "level",
        "model_state",
        "batch_size",
    ] {
        assert!(!memory[key].is_null(), "{key}: {memory}");
    }
    let m = get(&server.url("/metrics"));
    assert_eq!(m.status, 200);
    for line in [
        "membatch_http_responses_total{route=\"/v1/embeddings\",status=\"200\"} 1",
        "membatch_requests_total{outcome=\"completed\"} 1",
        "membatch_texts_total 2",
        "membatch_model_state{state=\"loaded\"} 1",
        "membatch_serving 1",
        "# TYPE membatch_inference_duration_seconds histogram",
        "membatch_batch_texts_bucket{le=\"+Inf\"} 1",
        "# TYPE membatch_memory_budget_bytes gauge",
        "# TYPE membatch_memory_pressure_level gauge",
    ] {
        assert!(m.body.contains(line), "missing {line:?} in\n{}", m.body);
    }
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let (mut server, _model) = Server::tiny(&["--shutdown-deadline-secs", "5"]);
    assert_eq!(
        post(&server.url("/v1/embeddings"), r#"{"input": "x"}"#, None).status,
        200
    );
    let started = Instant::now();
    // kill(1) sends SIGTERM to the child.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

#[test]
fn the_binary_refuses_bad_flags_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_membatch-server"))
        .args(["--memory-budget", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--memory-budget"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_membatch-server"))
        .args(["--model", "/nonexistent/model", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn rerank_scores_pairs_best_first_as_the_reference_model() {
    // A tiny BERT cross-encoder whose logits transformers computed once.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models/tiny-bert-reranker");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("reference.json")).unwrap()).unwrap();
    let logits: Vec<f32> = reference["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let (server, _model) = Server::tiny(&["--reranker", fixture.to_str().unwrap()]);
    let body = serde_json::json!({
        "query": reference["query"],
        "texts": reference["documents"],
        "return_text": true,
    });
    let r = post(&server.url("/rerank"), &body.to_string(), None);
    assert_eq!(r.status, 200, "{r:?}");
    let ranks = r.json();
    let ranks = ranks.as_array().unwrap();
    assert_eq!(ranks.len(), logits.len());
    let mut last = f32::INFINITY;
    for rank in ranks {
        let i = rank["index"].as_u64().unwrap() as usize;
        let score = rank["score"].as_f64().unwrap() as f32;
        let want = 1.0 / (1.0 + (-logits[i]).exp());
        assert!((score - want).abs() <= 1e-4, "text {i}: {score} vs {want}");
        assert!(score <= last, "not best first: {ranks:?}");
        last = score;
        assert_eq!(rank["text"], reference["documents"][i]);
    }
    // Raw logits on request, no texts unless asked.
    let body = serde_json::json!({
        "query": reference["query"],
        "texts": reference["documents"],
        "raw_scores": true,
    });
    let r = post(&server.url("/rerank"), &body.to_string(), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json().as_array().unwrap().len(), logits.len());
    for rank in r.json().as_array().unwrap() {
        let i = rank["index"].as_u64().unwrap() as usize;
        assert!((rank["score"].as_f64().unwrap() as f32 - logits[i]).abs() <= 1e-4);
        assert!(rank.get("text").is_none());
    }
    let r = post(
        &server.url("/rerank"),
        r#"{"query": "q", "texts": []}"#,
        None,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("texts is empty"), "{}", r.body);
    // /metrics labels the route from the router, and counts the pairs the
    // service's worker scored; an unknown path is one label.
    assert_eq!(get(&server.url("/no/such/route")).status, 404);
    let m = get(&server.url("/metrics")).body;
    for line in [
        "membatch_http_responses_total{route=\"/rerank\",status=\"200\"} 2".to_string(),
        "membatch_http_responses_total{route=\"/rerank\",status=\"400\"} 1".to_string(),
        "membatch_http_responses_total{route=\"other\",status=\"404\"} 1".to_string(),
        "membatch_kind_requests_total{kind=\"rerank\"} 2".to_string(),
        format!(
            "membatch_kind_texts_total{{kind=\"rerank\"}} {}",
            2 * logits.len()
        ),
    ] {
        assert!(m.contains(&line), "missing {line:?} in\n{m}");
    }
}

#[test]
fn rerank_without_a_reranker_says_how_to_start_one() {
    let (server, _model) = Server::tiny(&[]);
    let r = post(
        &server.url("/rerank"),
        r#"{"query": "q", "texts": ["a"]}"#,
        None,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("--reranker"), "{}", r.body);
}

#[test]
fn the_binary_checks_a_servers_health_itself() {
    let (server, _model) = Server::tiny(&[]);
    server.wait_loaded();
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let check = |port: &str| {
        Command::new(env!("CARGO_BIN_EXE_membatch-server"))
            .args(["--health-check", "--host", "0.0.0.0", "--port", port])
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    };
    let ok = check(&port);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    drop(server);
    let down = check(&port);
    assert!(!down.status.success());
    let err = String::from_utf8_lossy(&down.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/health"), "{err}");
    let zero = check("0");
    assert!(String::from_utf8_lossy(&zero.stderr).contains("needs the server's port"));
}

#[test]
fn ollamas_embed_routes_answer_in_its_shape() {
    let model = tiny_model_dir(&Tiny::default());
    let dir = model.path().to_str().unwrap();
    let server = Server::start(&["--model", dir, "--served-model-name", "all-minilm"], &[]);
    let unit = BertEmbedder::load(ModelSource::dir(model.path())).unwrap();
    let want = unit.embed(&["hello world", "the quick brown fox"]).unwrap();
    let r = post(
        &server.url("/api/embed"),
        r#"{"model": "anything", "input": ["hello world", "the quick brown fox"], "keep_alive": "5m", "options": {"temperature": 0}}"#,
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(body["model"], "all-minilm", "the served model's name");
    let got: Vec<Vec<f32>> = serde_json::from_value(body["embeddings"].clone()).unwrap();
    for (g, w) in got.iter().zip(&want) {
        let diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{diff}");
    }
    assert!(body["prompt_eval_count"].as_u64().unwrap() > 4);
    assert!(body["total_duration"].as_u64().unwrap() > 0);
    let one = post(
        &server.url("/api/embeddings"),
        r#"{"model": "m", "prompt": "hello world"}"#,
        None,
    );
    let v: Vec<f32> = serde_json::from_value(one.json()["embedding"].clone()).unwrap();
    assert!(v.iter().zip(&want[0]).all(|(a, b)| (a - b).abs() <= 1e-6));
    let short = post(
        &server.url("/api/embed"),
        r#"{"input": "hello", "dimensions": 8}"#,
        None,
    );
    assert_eq!(short.json()["embeddings"][0].as_array().unwrap().len(), 8);
    let tags = get(&server.url("/api/tags")).json();
    assert_eq!(tags["models"][0]["model"], "all-minilm");
    assert!(get(&server.url("/api/version")).json()["version"].is_string());
    // Ollama's error shape: {"error": "..."}, and the server goes on.
    for body in [
        r#"{"input": []}"#,
        r#"{"input": "x", "dimensions": 0}"#,
        r#"{"input": [1, 2]}"#,
        r#"{"model": "m"}"#,
    ] {
        let r = post(&server.url("/api/embed"), body, None);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        let e = r.json();
        assert!(
            e["error"].is_string() && e.as_object().unwrap().len() == 1,
            "{body}: {e}"
        );
    }
    assert_eq!(get(&server.url("/health")).status, 200);
}

#[test]
fn the_served_model_is_listed_named_in_answers_and_strictly_checked_when_asked() {
    let (server, _model) = Server::tiny(&["--served-model-name", "mini"]);
    let list = get(&server.url("/v1/models")).json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "mini");
    assert_eq!(list["data"][0]["object"], "model");
    assert!(list["data"][0]["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(get(&server.url("/v1/models/mini")).json()["id"], "mini");
    let e = openai_error(&get(&server.url("/v1/models/other")), 404);
    assert_eq!(e["code"], "model_not_found");
    let r = post(
        &server.url("/v1/embeddings"),
        r#"{"input": "x", "model": "text-embedding-3-small"}"#,
        None,
    );
    assert_eq!(
        r.json()["model"],
        "mini",
        "answered by the served model, named so"
    );
    drop(server);
    let (strict, _model) = Server::tiny(&["--served-model-name", "mini", "--strict-model-name"]);
    let url = strict.url("/v1/embeddings");
    let e = openai_error(
        &post(&url, r#"{"input": "x", "model": "other"}"#, None),
        404,
    );
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("model_not_found"), Some("model"))
    );
    assert_eq!(
        post(&url, r#"{"input": "x", "model": "mini"}"#, None).status,
        200
    );
    assert_eq!(
        post(&url, r#"{"input": "x"}"#, None).status,
        200,
        "no model named: the served one"
    );
    // Ollama's routes check the name too, in Ollama's shape.
    let r = post(
        &strict.url("/api/embed"),
        r#"{"model": "other", "input": "x"}"#,
        None,
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("other"),
        "{r:?}"
    );
    let r = post(
        &strict.url("/api/embed"),
        r#"{"model": "mini", "input": "x"}"#,
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn cohere_and_jina_rerank_shapes_give_the_tei_routes_scores() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models/tiny-bert-reranker");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("reference.json")).unwrap()).unwrap();
    let (server, _model) = Server::tiny(&["--reranker", fixture.to_str().unwrap()]);
    let tei = post(
        &server.url("/rerank"),
        &json!({"query": reference["query"], "texts": reference["documents"]}).to_string(),
        None,
    )
    .json();
    let tei: Vec<(u64, f64)> = tei
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["score"].as_f64().unwrap()))
        .collect();
    let n = tei.len();
    let cohere = post(
        &server.url("/v2/rerank"),
        &json!({"model": "rerank-v3.5", "query": reference["query"], "documents": reference["documents"], "top_n": 2, "max_tokens_per_doc": 512}).to_string(),
        None,
    );
    assert_eq!(cohere.status, 200, "{cohere:?}");
    // The fixture's last document is longer than the reranker reads.
    assert_eq!(
        cohere.header("x-membatch-truncated"),
        Some("1"),
        "{cohere:?}"
    );
    let c = cohere.json();
    assert!(c["id"].is_string() && c["meta"]["tokens"]["input_tokens"].as_u64().unwrap() > 0);
    let results = c["results"].as_array().unwrap();
    assert_eq!(results.len(), 2.min(n), "top_n");
    for (r, (i, s)) in results.iter().zip(&tei) {
        assert_eq!(r["index"].as_u64().unwrap(), *i);
        assert!((r["relevance_score"].as_f64().unwrap() - s).abs() <= 1e-6);
    }
    let docs: Vec<Value> = reference["documents"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                d.clone()
            } else {
                json!({"text": d})
            }
        })
        .collect();
    let jina = post(
        &server.url("/v1/rerank"),
        &json!({"model": "jina-reranker-v2", "query": reference["query"], "documents": docs})
            .to_string(),
        None,
    );
    assert_eq!(jina.status, 200, "{jina:?}");
    let j = jina.json();
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), n);
    for (r, (i, s)) in results.iter().zip(&tei) {
        assert_eq!(r["index"].as_u64().unwrap(), *i);
        assert!((r["relevance_score"].as_f64().unwrap() - s).abs() <= 1e-6);
        assert_eq!(r["document"]["text"], reference["documents"][*i as usize]);
    }
    assert!(j["usage"]["total_tokens"].as_u64().unwrap() > 0);
    // Each API's own error shape.
    let e = post(
        &server.url("/v2/rerank"),
        r#"{"query": "q", "documents": []}"#,
        None,
    );
    assert_eq!(e.status, 400);
    assert!(e.json()["message"]
        .as_str()
        .unwrap()
        .contains("documents is empty"));
    let e = post(&server.url("/v1/rerank"), r#"{"query": "q"}"#, None);
    assert_eq!(e.status, 400);
    assert!(e.json()["detail"].is_string(), "{e:?}");
    // More documents than one request may hold: a 413 on every rerank
    // route, in its API's shape, before anything is scored.
    let many = vec!["d"; membatch_server::MAX_RERANK_TEXTS + 1];
    for (path, body, key) in [
        ("/rerank", json!({"query": "q", "texts": many}), "error"),
        (
            "/v2/rerank",
            json!({"query": "q", "documents": many}),
            "message",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": many}),
            "detail",
        ),
    ] {
        let r = post(&server.url(path), &body.to_string(), None);
        assert_eq!(r.status, 413, "{path}: {r:?}");
        assert!(
            r.json()[key]
                .as_str()
                .unwrap()
                .contains("at most 2048 allowed"),
            "{path}: {r:?}"
        );
    }
}

#[test]
fn tokenize_and_decode_as_tei_answers_them() {
    let (server, model) = Server::tiny(&[]);
    let library = BertEmbedder::load(ModelSource::dir(model.path())).unwrap();
    let texts = ["hello world", "the quick brown fox"];
    let r = post(
        &server.url("/tokenize"),
        &json!({"inputs": texts}).to_string(),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let lists = r.json();
    let want = library.tokenize(&texts).unwrap();
    for (list, (tokens, text)) in lists.as_array().unwrap().iter().zip(want.iter().zip(texts)) {
        let ids: Vec<u32> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, tokens.ids(), "the ids the model runs");
        let first = &list[0];
        assert_eq!(
            (first["special"].as_bool(), first["start"].is_null()),
            (Some(true), true)
        );
        let word = &list[1];
        let (start, stop) = (
            word["start"].as_u64().unwrap() as usize,
            word["stop"].as_u64().unwrap() as usize,
        );
        assert_eq!(word["text"], text[start..stop]);
        let decoded = post(
            &server.url("/decode"),
            &json!({"ids": ids}).to_string(),
            None,
        )
        .json();
        assert_eq!(decoded[0], *text, "decoding the ids gives the text back");
    }
    let without = post(
        &server.url("/tokenize"),
        r#"{"inputs": "hello", "add_special_tokens": false}"#,
        None,
    )
    .json();
    assert_eq!(without[0].as_array().unwrap().len(), 1);
    for (route, body) in [
        ("/tokenize", r#"{"inputs": []}"#),
        ("/decode", r#"{"ids": [999999]}"#),
        ("/decode", r#"{"ids": "x"}"#),
    ] {
        let r = post(&server.url(route), body, None);
        assert_eq!(r.status, 400, "{route} {body}: {r:?}");
        assert!(r.json()["error"].is_string(), "{r:?}");
    }
}

#[test]
fn tei_truncation_fields_are_honoured_or_refused_with_its_status() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models/tiny-bert-reranker");
    let (server, _model) = Server::tiny(&["--reranker", fixture.to_str().unwrap()]);
    let long = "hello ".repeat(400);
    let embed = server.url("/embed");
    let ok = post(
        &embed,
        &json!({"inputs": "hi", "truncation_direction": "Right"}).to_string(),
        None,
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let left = post(
        &embed,
        &json!({"inputs": "hi", "truncation_direction": "Left"}).to_string(),
        None,
    );
    assert_eq!(left.status, 413, "{left:?}");
    assert!(
        left.json()["error"].as_str().unwrap().contains("Right"),
        "{left:?}"
    );
    let rerank = server.url("/rerank");
    let cut = post(
        &rerank,
        &json!({"query": "q", "texts": [long]}).to_string(),
        None,
    );
    assert_eq!(cut.status, 200, "cut by default: {cut:?}");
    let refused = post(
        &rerank,
        &json!({"query": "q", "texts": ["short", long], "truncate": false}).to_string(),
        None,
    );
    assert_eq!(refused.status, 413, "{refused:?}");
    assert!(
        refused.json()["error"].as_str().unwrap().contains("[1]"),
        "{refused:?}"
    );
    assert_eq!(get(&server.url("/health")).status, 200);
}

/// Every request gets an id (the caller's `x-request-id`, or a new one; a
/// malformed one is replaced), answered in the header and carried by every
/// log line about the request: the access line (status, latency, texts,
/// tokens, truncated inputs) and the worker's line naming the batch that
/// ran its texts. Every embedding route says how many inputs were
/// truncated.
#[test]
fn request_ids_access_lines_and_truncation_are_visible() {
    let model = tiny_model_dir(&Tiny::default());
    let (server, log) = Server::start_logged(
        &[
            "--model",
            model.path().to_str().unwrap(),
            "--log-format",
            "json",
            // A small body limit, so the refused body below is small enough
            // for the socket to take whole before the 413 closes it (with
            // the 8 MiB default a busy client could still be writing, and
            // see a reset instead of the answer).
            "--max-body",
            "65536",
        ],
        &[("RUST_LOG", "membatch=debug,membatch_server=info")],
    );
    server.wait_loaded();
    let long = "word ".repeat(2000);
    let body = json!({"input": ["short", long]}).to_string();
    let r = send(
        "POST",
        &server.url("/v1/embeddings"),
        &[("x-request-id", "req-42")],
        Some(&body),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-request-id"), Some("req-42"));
    assert_eq!(r.header("x-membatch-truncated"), Some("1"));
    for (path, body) in [
        ("/embed", r#"{"inputs": ["short"]}"#),
        ("/", r#"{"inputs": "short"}"#),
        ("/api/embed", r#"{"input": "short"}"#),
        ("/api/embeddings", r#"{"prompt": "short"}"#),
        ("/embeddings", r#"{"input": "short"}"#),
    ] {
        let r = send("POST", &server.url(path), &[], Some(body));
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("x-membatch-truncated"), Some("0"), "{path}");
        let id = r.header("x-request-id").unwrap();
        assert_eq!(id.len(), 36, "{path}: a new UUID, {id}");
    }
    for bad in ["has space", &"x".repeat(200)] {
        let r = send("GET", &server.url("/info"), &[("x-request-id", bad)], None);
        let id = r.header("x-request-id").unwrap();
        assert!(id != bad && id.len() == 36, "{bad:?} was echoed: {id}");
    }
    // A route without texts has an id and no truncation header; so has
    // every refusal, whichever layer answers it (404 and 405 from the
    // router, 413 from the body limit, 400 from a handler).
    let r = get(&server.url("/health"));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(r.header("x-membatch-truncated"), None);
    for (method, path, body) in [
        ("GET", "/no/such/route", None),
        ("GET", "/v1/embeddings", None),
        ("POST", "/v1/embeddings", Some("{")),
        (
            "POST",
            "/v1/embeddings",
            Some(&*format!(r#"{{"input": "{}"}}"#, "x".repeat(80 << 10))),
        ),
    ] {
        let r = send(
            method,
            &server.url(path),
            &[("x-request-id", "refused-1")],
            body,
        );
        assert!(r.status >= 400, "{method} {path}: {r:?}");
        assert_eq!(
            r.header("x-request-id"),
            Some("refused-1"),
            "{method} {path}: {}",
            r.status
        );
    }
    // --max-seq-length is the server's too: 8 tokens cut a ten-word text.
    let (short, _m) = Server::tiny(&["--max-seq-length", "8"]);
    let body = r#"{"input": ["one two three four five six seven eight nine ten", "two"]}"#;
    let r = send("POST", &short.url("/v1/embeddings"), &[], Some(body));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-membatch-truncated"), Some("1"));

    // The log: JSON lines; req-42's access line and its worker line.
    let started = Instant::now();
    let lines: Vec<Value> = loop {
        let text = log.lock().unwrap().clone();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if lines
            .iter()
            .any(|l| l["span"]["id"] == "req-42" && l["fields"]["message"] == "answered")
            || started.elapsed() > Duration::from_secs(10)
        {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let of_42: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["id"] == "req-42")
        .collect();
    let access = of_42
        .iter()
        .find(|l| l["fields"]["message"] == "answered")
        .unwrap_or_else(|| panic!("no access line for req-42 in {lines:#?}"));
    let f = &access["fields"];
    assert_eq!(f["status"], 200, "{access}");
    assert_eq!(f["texts"], 2, "{access}");
    assert_eq!(f["truncated"], 1, "{access}");
    assert!(
        f["tokens"].as_u64().unwrap() > 2 && f["latency_ms"].is_number(),
        "{access}"
    );
    assert_eq!(access["span"]["path"], "/v1/embeddings");
    let ran = of_42
        .iter()
        .find(|l| l["fields"]["message"] == "texts ran in a batch")
        .unwrap_or_else(|| panic!("no batch line for req-42 in {of_42:#?}"));
    let batch = &ran["fields"]["batch"];
    assert!(batch.is_u64(), "{ran}");
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["name"] == "batch" && l["span"]["number"] == *batch),
        "no line of batch {batch} in {lines:#?}"
    );
}

/// CORS is off by default; with `--cors-allow-origin` a preflight is
/// answered before the API key is asked for, the listed origin gets the
/// CORS headers (the request id and truncation headers exposed), and
/// another origin gets none.
#[test]
fn cors_answers_the_allowed_origin_only_and_preflights_need_no_key() {
    let body = r#"{"input": "hi"}"#;
    let origin = "https://app.example";
    let preflight = [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization,content-type",
        ),
    ];
    let (plain, _m) = Server::tiny(&[]);
    let r = send(
        "POST",
        &plain.url("/v1/embeddings"),
        &[("origin", origin)],
        Some(body),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        None,
        "off by default"
    );

    let (server, _m) = Server::tiny(&["--cors-allow-origin", origin, "--api-key", "k"]);
    let url = server.url("/v1/embeddings");
    let pre = send("OPTIONS", &url, &preflight, None);
    assert!(pre.status == 200 || pre.status == 204, "{pre:?}");
    assert_eq!(pre.header("access-control-allow-origin"), Some(origin));
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    let r = send(
        "POST",
        &url,
        &[("origin", origin), ("authorization", "Bearer k")],
        Some(body),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("x-membatch-truncated"),
        "{exposed}"
    );
    // The key is still asked for on the request itself.
    let r = send("POST", &url, &[("origin", origin)], Some(body));
    assert_eq!(r.status, 401);
    // A client library's own headers (OpenAI's SDK sends x-stainless-*)
    // are allowed too: the preflight mirrors them.
    let sdk = [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization,x-stainless-os",
        ),
    ];
    let pre = send("OPTIONS", &url, &sdk, None);
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-stainless-os"), "{pre:?}");
    // Another origin: no CORS headers, on the preflight or the request.
    let other = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "POST"),
    ];
    let pre = send("OPTIONS", &url, &other, None);
    assert_eq!(pre.header("access-control-allow-origin"), None, "{pre:?}");
    let r = send(
        "POST",
        &url,
        &[
            ("origin", "https://evil.example"),
            ("authorization", "Bearer k"),
        ],
        Some(body),
    );
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
}

/// `--cors-allow-origin` takes a comma-separated list (spaces around the
/// commas trimmed) and `*`, and refuses what is not an origin at startup,
/// naming the flag.
#[test]
fn cors_origins_are_a_list_or_any_and_a_bad_one_is_refused_at_startup() {
    let model = tiny_model_dir(&Tiny::default());
    let dir = model.path().to_str().unwrap();
    let preflight = |server: &Server, origin: &str| {
        let r = send(
            "OPTIONS",
            &server.url("/embed"),
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ],
            None,
        );
        r.header("access-control-allow-origin").map(String::from)
    };
    let listed = Server::start(
        &["--model", dir],
        &[(
            "MEMBATCH_CORS_ALLOW_ORIGIN",
            "https://a.example, https://b.example/",
        )],
    );
    assert_eq!(
        preflight(&listed, "https://a.example").as_deref(),
        Some("https://a.example")
    );
    assert_eq!(
        preflight(&listed, "https://b.example").as_deref(),
        Some("https://b.example")
    );
    assert_eq!(preflight(&listed, "https://c.example"), None);
    let any = Server::start(&["--model", dir, "--cors-allow-origin", "*"], &[]);
    assert_eq!(preflight(&any, "https://c.example").as_deref(), Some("*"));
    let out = Command::new(env!("CARGO_BIN_EXE_membatch-server"))
        .args([
            "--model",
            dir,
            "--port",
            "0",
            "--cors-allow-origin",
            "app.example",
        ])
        .env_remove("MEMBATCH_CORS_ALLOW_ORIGIN")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cors_allow_origin") && stderr.contains("app.example"),
        "{stderr}"
    );
}
