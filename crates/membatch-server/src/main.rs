//! `membatch-server`: the membatch embedding server.
//!
//! ```text
//! membatch-server [--host 127.0.0.1] [--port 3000] [--model DIR|REPO]
//!     [--memory-budget SIZE|PERCENT] [--threads N] [--precision f32|int8]
//!     [--max-inputs-per-request N] [--max-tokens-per-request N]
//!     [--max-queued-tokens N] [--idle-unload-secs N] [--request-timeout-secs N]
//!     [--api-key KEY] [--reranker DIR|REPO] [--lazy] [--log-format text|json]
//!     [--cors-allow-origin ORIGIN]...
//! membatch-server --health-check [--host H] [--port P]
//! ```
//!
//! Every flag also reads an environment variable (`--help` names them):
//! the library's settings (`--model`, `--memory-budget`, ...: every row of
//! docs/configuration.md) through the library's reader, flags over it; the
//! server's own through clap. Prints `membatch-server listening on
//! http://ADDR` on stdout once it accepts connections. SIGTERM or Ctrl-C:
//! stops accepting, drains for up to `--shutdown-deadline-secs`, fails what
//! remains, exits 0. Any startup error is one line on stderr, exit code 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use membatch::memory::MemoryBudget;
use membatch::service::EmbedService;
use membatch::settings::Group;
use membatch::{BertEmbedderBuilder, BertReranker, Embedder, ModelSource};
use membatch_bin::{fail, size, Failure, Groups, LogArgs, Settings};
use membatch_server::{router, AppState};

/// An OpenAI-compatible embedding server that never dies of memory.
#[derive(Parser, Debug)]
#[command(name = "membatch-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MEMBATCH_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, env = "MEMBATCH_PORT", default_value_t = 3000)]
    port: u16,
    /// The model name responses carry [default: the model directory's or repo's name]
    #[arg(long, env = "MEMBATCH_SERVED_MODEL_NAME")]
    served_model_name: Option<String>,
    /// Seconds a request may wait for its vectors before a 503
    #[arg(long, env = "MEMBATCH_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    request_timeout_secs: u64,
    /// Require Authorization: Bearer KEY (all routes but /health and /metrics)
    #[arg(long, env = "MEMBATCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body (413 above)
    #[arg(long, env = "MEMBATCH_MAX_BODY", default_value = "8MiB", value_parser = size)]
    max_body: u64,
    /// Seconds to drain requests after SIGTERM or Ctrl-C
    #[arg(long, env = "MEMBATCH_SHUTDOWN_DEADLINE_SECS", default_value_t = 30)]
    shutdown_deadline_secs: u64,
    /// A cross-encoder (directory or hub repo id) to serve POST /rerank with [default: none]
    #[arg(long, env = "MEMBATCH_RERANKER")]
    reranker: Option<String>,
    /// Refuse a request that names another model than the served one (404
    /// model_not_found) instead of answering it with the served model.
    #[arg(long, env = "MEMBATCH_STRICT_MODEL_NAME")]
    strict_model_name: bool,
    /// Let browser apps from ORIGIN call the server (CORS; repeat the flag or separate
    /// origins with commas; `*`: any origin) [default: no CORS headers]
    #[arg(
        long,
        env = "MEMBATCH_CORS_ALLOW_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    cors_allow_origin: Vec<String>,
    /// Load the model on the first request instead of at startup.
    #[arg(long, env = "MEMBATCH_LAZY")]
    lazy: bool,
    /// Ask the server listening on --host/--port for /health, and exit 0 when it answers
    /// 200 (a container's health check that needs no HTTP client in the image).
    #[arg(long)]
    health_check: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    settings: Settings<ServerSettings>,
}

/// Every library setting as a flag but `--normalize`: the routes choose
/// (OpenAI's vectors have unit length; `/embed` asks).
#[derive(Debug, Clone, Copy)]
struct ServerSettings;

impl Groups for ServerSettings {
    const GROUPS: &'static [Group] =
        &[Group::Model, Group::Memory, Group::Batching, Group::Service];
    const EXCEPT: &'static [&'static str] = &["normalize"];
}

fn main() -> ExitCode {
    // One malloc heap, so an unload gives the model's memory back and a
    // reload has the room the first load had (docs/memory.md).
    membatch::memory::single_malloc_arena();
    membatch_bin::main_async(
        "membatch-server",
        "membatch=info,membatch_server=info",
        |a: &Args| a.log.log_format,
        serve,
    )
}

async fn serve(args: Args) -> Result<(), Failure> {
    if args.health_check {
        return tokio::task::spawn_blocking(move || health_check(&args.host, args.port))
            .await
            .map_err(|e| fail(format!("the health check failed: {e}")))?;
    }
    let (service, state) = build(&args)?;
    let app = router(state, args.max_body as usize);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| fail(format!("cannot listen on {}:{}: {e}", args.host, args.port)))?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| fail(format!("cannot read the listening address: {e}")))?;
    if !args.lazy {
        // Load at startup, in the background: the port answers /health at
        // once ("loading"), and the first request does not pay the load.
        let service = service.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = service.embed(&["warm up"]) {
                tracing::error!(error = %e.report(), "loading the model at startup failed");
            }
        });
    }
    println!("membatch-server listening on http://{addr}");
    tracing::info!(%addr, "listening");

    let stop = Arc::new(tokio::sync::Notify::new());
    let server = {
        let stop = stop.clone();
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.notified().await })
    };
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    let deadline = Duration::from_secs(args.shutdown_deadline_secs);
    tokio::select! {
        r = &mut server => r.map_err(|e| fail(format!("server error: {e}")))?,
        () = shutdown_signal() => {
            tracing::info!(deadline_seconds = deadline.as_secs(), "shutting down: no new connections; draining");
            let started = Instant::now();
            stop.notify_one();
            match tokio::time::timeout(deadline, &mut server).await {
                Ok(r) => r.map_err(|e| fail(format!("server error: {e}")))?,
                Err(_) => tracing::warn!("the drain deadline passed with requests in flight"),
            }
            let left = deadline.saturating_sub(started.elapsed());
            tokio::task::spawn_blocking(move || service.shutdown(left))
                .await
                .map_err(|e| fail(format!("shutdown failed: {e}")))?;
            tracing::info!("stopped");
        }
    }
    Ok(())
}

/// Asks the server on `host:port` for `/health` (on loopback when `host`
/// is a wildcard address), within 3 s: `Ok` when it answers 200.
///
/// A dozen lines of HTTP/1.1 by hand rather than an HTTP client: the one
/// request a health check makes needs none, and the image then needs no
/// `curl`.
fn health_check(host: &str, port: u16) -> Result<(), Failure> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    if port == 0 {
        return Err(fail(
            "--health-check needs the server's port (--port or MEMBATCH_PORT), not 0",
        ));
    }
    let host = match host {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        h => h,
    };
    let timeout = Duration::from_secs(3);
    let addr = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| fail(format!("cannot resolve {host}:{port}")))?;
    let unhealthy = |e: std::io::Error| fail(format!("http://{addr}/health: {e}"));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(unhealthy)?;
    stream.set_read_timeout(Some(timeout)).map_err(unhealthy)?;
    stream.set_write_timeout(Some(timeout)).map_err(unhealthy)?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(unhealthy)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(unhealthy)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status_line = status_line.lines().next().unwrap_or("");
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(fail(format!(
            "http://{addr}/health answered {status_line:?}"
        )))
    }
}

/// Ctrl-C, or SIGTERM where there is one.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The service (a lazily loaded model under one memory budget, its
/// worker running) and the routes' state, from the environment and flags.
fn build(args: &Args) -> membatch::Result<(EmbedService, AppState)> {
    let builder = args.settings.builder()?;
    let source = builder
        .clone()
        .build()?
        .model()
        .source
        .clone()
        .unwrap_or_else(ModelSource::default_model);
    let builder = builder.source(source.clone());
    // The model gives pooled vectors; the routes normalise (OpenAI's
    // embeddings have unit length; /embed asks).
    let config = builder.normalize(false).build()?;

    // One budget for the batches and for every (re)load of the model.
    let budget = MemoryBudget::new(config.memory().clone());
    let model = BertEmbedderBuilder::from(config.model().clone())
        .budget(budget.clone())
        .build_lazy()?;
    let pooling = match model.loader().settings().pooling {
        membatch::Pooling::Cls => "cls",
        membatch::Pooling::Max => "max",
        membatch::Pooling::LastToken => "lasttoken",
        _ => "mean",
    };
    let embedder: Arc<dyn Embedder> = Arc::new(model);
    // A reranker loads now, within the same budget as the embedding model.
    let reranker = match &args.reranker {
        Some(dir) => {
            // The same settings and budget; the embedding model's length,
            // prompt and dimensions are not the reranker's.
            let reranker = BertReranker::load_with(&config, ModelSource::parse(dir), &budget)?;
            Some(Arc::new(reranker))
        }
        None => None,
    };
    let mut service = EmbedService::builder(embedder);
    if let Some(reranker) = reranker {
        service = service.reranker(reranker);
    }
    let service = service
        .budget(budget)
        .batch(*config.batch())
        .config(*config.service())
        .spawn()?;
    let name = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| match &source {
            ModelSource::Dir(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().replace("sentence-transformers--", ""))
                .unwrap_or_else(|| p.display().to_string()),
            other => other.to_string(),
        });
    let mut state = AppState::new(service.clone(), name)
        .request_timeout(Duration::from_secs(args.request_timeout_secs.max(1)))
        .strict_model_name(args.strict_model_name)
        .cors_allow_origins(&args.cors_allow_origin)?
        .precision(config.model().precision)
        .pooling(pooling);
    if let Some(dir) = &args.reranker {
        let source = ModelSource::parse(dir);
        state = state.reranker_name(match &source {
            ModelSource::Dir(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            other => other.to_string(),
        });
    }
    if let Some(key) = &args.api_key {
        state = state.api_key(key.clone());
    }
    state = state.tokenizer_source(source.clone());
    Ok((service, state))
}
