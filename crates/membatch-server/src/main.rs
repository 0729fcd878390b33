//! `membatch-server`: the membatch embedding server.
//!
//! ```text
//! membatch-server [--host 127.0.0.1] [--port 3000] [--model DIR|REPO]
//!     [--memory-budget SIZE|PERCENT] [--threads N] [--precision f32|int8]
//!     [--max-inputs-per-request N] [--max-tokens-per-request N]
//!     [--max-queued-tokens N] [--idle-unload-secs N] [--request-timeout-secs N]
//!     [--api-key KEY] [--reranker DIR|REPO] [--lazy]
//! ```
//!
//! Every flag also reads an environment variable (`--help` names them);
//! the other `EMBEDDING_*` settings of the library apply too
//! (docs/configuration.md). Prints `membatch-server listening on
//! http://ADDR` on stdout once it accepts connections. SIGTERM or Ctrl-C:
//! stops accepting, drains for up to `--shutdown-deadline-secs`, fails what
//! remains, exits 0. Any startup error is one line on stderr, exit code 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use membatch::memory::{MemoryBudget, MemoryLimit};
use membatch::service::EmbedService;
use membatch::{
    BertEmbedderBuilder, BertReranker, Config, Embedder, ModelInfo, ModelSource, ModelState,
    Precision, Tokens,
};
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
    /// Model directory or Hugging Face repo id [default: the fetched all-MiniLM-L6-v2, else the hub]
    #[arg(long, env = "MEMBATCH_MODEL")]
    model: Option<String>,
    /// The model name responses carry [default: the model directory's or repo's name]
    #[arg(long, env = "MEMBATCH_SERVED_MODEL_NAME")]
    served_model_name: Option<String>,
    /// Compute threads [default: all cores]
    #[arg(long, env = "EMBEDDING_THREADS", value_parser = positive)]
    threads: Option<usize>,
    /// Memory budget: a size (400MiB) or a percentage of the container's memory [default: 70%]
    #[arg(long, env = "EMBEDDING_MAX_MEMORY", value_parser = memory_limit)]
    memory_budget: Option<MemoryLimit>,
    /// Weights in f32 (exact) or int8 (a third of the memory) [default: f32]
    #[arg(long, env = "EMBEDDING_PRECISION", value_parser = precision)]
    precision: Option<Precision>,
    /// Most texts in one request [default: 2048]
    #[arg(long, env = "EMBEDDING_MAX_INPUTS_PER_REQUEST", value_parser = positive)]
    max_inputs_per_request: Option<usize>,
    /// Most tokens in one request [default: 300000]
    #[arg(long, env = "EMBEDDING_MAX_TOKENS_PER_REQUEST", value_parser = positive)]
    max_tokens_per_request: Option<usize>,
    /// Most tokens waiting in the queue before requests get 429 [default: 1048576]
    #[arg(long, env = "EMBEDDING_MAX_QUEUED_TOKENS", value_parser = positive)]
    max_queued_tokens: Option<usize>,
    /// Unload the model after this many idle seconds (0: never) [default: never]
    #[arg(long, env = "EMBEDDING_IDLE_UNLOAD_SECS")]
    idle_unload_secs: Option<u64>,
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
    /// Load the model on the first request instead of at startup.
    #[arg(long, env = "MEMBATCH_LAZY")]
    lazy: bool,
    /// Testing: batches holding a text that contains this marker panic.
    #[arg(long, hide = true)]
    panic_on: Option<String>,
    /// Testing: panics in a row after which the worker gives up.
    #[arg(long, hide = true)]
    max_consecutive_panics: Option<u32>,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}

fn memory_limit(s: &str) -> Result<MemoryLimit, String> {
    MemoryLimit::parse("--memory-budget", s).map_err(|e| e.to_string())
}

fn size(s: &str) -> Result<u64, String> {
    membatch::memory::parse_size("--max-body", s).map_err(|e| e.to_string())
}

fn precision(s: &str) -> Result<Precision, String> {
    s.parse()
        .map_err(|e: membatch::ParsePrecisionError| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "membatch=info,membatch_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "membatch-server: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("membatch-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("membatch-server: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// A library error as one line, with its causes.
fn report(e: membatch::Error) -> String {
    e.report().to_string()
}

async fn serve(args: Args) -> Result<(), String> {
    let (service, state) = build(&args).map_err(report)?;
    let app = router(state, args.max_body as usize);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
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
        r = &mut server => r.map_err(|e| format!("server error: {e}"))?,
        () = shutdown_signal() => {
            tracing::info!(deadline_seconds = deadline.as_secs(), "shutting down: no new connections; draining");
            let started = Instant::now();
            stop.notify_one();
            match tokio::time::timeout(deadline, &mut server).await {
                Ok(r) => r.map_err(|e| format!("server error: {e}"))?,
                Err(_) => tracing::warn!("the drain deadline passed with requests in flight"),
            }
            let left = deadline.saturating_sub(started.elapsed());
            tokio::task::spawn_blocking(move || service.shutdown(left))
                .await
                .map_err(|e| format!("shutdown failed: {e}"))?;
            tracing::info!("stopped");
        }
    }
    Ok(())
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
    let config = Config::from_env()?;
    let mut service = config.service().into_builder();
    if let Some(n) = args.max_inputs_per_request {
        service = service.max_inputs_per_request(n);
    }
    if let Some(n) = args.max_tokens_per_request {
        service = service.max_tokens_per_request(n);
    }
    if let Some(n) = args.max_queued_tokens {
        service = service.max_queued_tokens(n);
    }
    if let Some(s) = args.idle_unload_secs.filter(|s| *s > 0) {
        service = service.idle_unload(Duration::from_secs(s));
    }
    if let Some(n) = args.max_consecutive_panics {
        service = service.max_consecutive_panics(n);
    }
    let mut builder = config.into_builder().service(service.build()?);
    let source = match &args.model {
        Some(m) => ModelSource::parse(m),
        None => ModelSource::from_env_or_default(),
    };
    builder = builder.source(source.clone());
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    if let Some(p) = args.precision {
        builder = builder.precision(p);
    }
    if let Some(limit) = args.memory_budget {
        builder = builder.memory_limit(limit);
    }
    // The model gives pooled vectors; the routes normalise (OpenAI's
    // embeddings have unit length; /embed asks).
    let config = builder.normalize(false).build()?;

    // One budget for the batches and for every (re)load of the model.
    let budget = MemoryBudget::new(config.memory().clone());
    let model = BertEmbedderBuilder::from(config.model().clone())
        .budget(budget.clone())
        .build_lazy()?;
    let embedder: Arc<dyn Embedder> = match &args.panic_on {
        Some(marker) => Arc::new(PanicOn {
            inner: model,
            marker: marker.clone(),
        }),
        None => Arc::new(model),
    };
    // A reranker loads now, within the same budget as the embedding model.
    let reranker = match &args.reranker {
        Some(dir) => {
            let mut model = config.model().clone();
            model.source = Some(ModelSource::parse(dir));
            // The embedding model's truncation length is not the
            // reranker's: it takes its own from its files.
            model.max_seq_length = None;
            let reranker = BertReranker::from_builder(
                BertEmbedderBuilder::from(model).budget(budget.clone()),
            )?;
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
        .request_timeout(Duration::from_secs(args.request_timeout_secs.max(1)));
    if let Some(key) = &args.api_key {
        state = state.api_key(key.clone());
    }
    Ok((service, state))
}

/// For testing a failing worker: batches holding the marker panic.
struct PanicOn<E> {
    inner: E,
    marker: String,
}

/// The tokens PanicOn gives a text holding its marker: no tokenizer
/// gives this id.
const PANIC_ID: u32 = u32::MAX;

impl<E: Embedder> Embedder for PanicOn<E> {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }
    fn tokenize(&self, texts: &[&str]) -> membatch::Result<Vec<Tokens>> {
        let mut tokens = self.inner.tokenize(texts)?;
        for (t, text) in tokens.iter_mut().zip(texts) {
            if text.contains(&self.marker) {
                *t = Tokens::new(vec![PANIC_ID]);
            }
        }
        Ok(tokens)
    }
    fn embed_tokens(&self, batch: &[&Tokens]) -> membatch::Result<Vec<Vec<f32>>> {
        if batch.iter().any(|t| t.ids() == [PANIC_ID]) {
            panic!("a test asked this batch to panic");
        }
        self.inner.embed_tokens(batch)
    }
    fn state(&self) -> ModelState {
        self.inner.state()
    }
    fn unload(&self) -> bool {
        self.inner.unload()
    }
}
