//! `service_load`: many callers at once, each embedding a few long texts,
//! through one `EmbedService` (or, with `--shared-batcher`, sharing one
//! `BatchEmbedder`, as a caller without the service would). Prints one JSON
//! object: how many calls succeeded, the errors by message, time, memory.
//!
//! ```text
//! cargo run --example service_load -- [--callers 64] [--per-caller 4]
//!     [--corpus 256] [--words 300] [--shared-batcher] [--threads N]
//! ```
//!
//! The texts are `uniform_corpus(corpus, words, 3)`: with 300 words each
//! is truncated at the model's 256 tokens, the costliest text there is.
//! Caller `i` embeds texts `i·per_caller ..` (wrapping around the corpus).
//! `tests/real_limits.rs` runs it inside a memory cgroup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use membatch::service::EmbedService;
use membatch::{BatchEmbedder, BertEmbedder, Config};
use membatch_testkit::corpus::uniform_corpus;

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent callers, one thread each.
    #[arg(long, default_value_t = 64)]
    callers: usize,
    /// Texts each caller embeds in one call.
    #[arg(long, default_value_t = 4)]
    per_caller: usize,
    /// Distinct texts.
    #[arg(long, default_value_t = 256)]
    corpus: usize,
    /// Words per text.
    #[arg(long, default_value_t = 300)]
    words: usize,
    /// Share one BatchEmbedder between the callers instead of a service.
    #[arg(long)]
    shared_batcher: bool,
    /// Compute threads.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::process::ExitCode {
    membatch_bin::one_line_panics("service_load");
    let args = match membatch_bin::parse_args::<Args>("service_load") {
        Ok(a) => a,
        Err(code) => return code,
    };
    membatch_bin::init_logging("error", membatch_bin::LogFormat::Text);
    match run(&args) {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("service_load: {}", membatch_bin::Failure::from(e).0);
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> membatch::Result<serde_json::Value> {
    let mut builder = Config::from_env()?.into_builder();
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    let config = builder.build()?;
    let embedder = BertEmbedder::from_config(config.model())?;
    let corpus = uniform_corpus(args.corpus, args.words, 3);
    let requests: Vec<Vec<String>> = (0..args.callers)
        .map(|i| {
            (0..args.per_caller)
                .map(|k| corpus[(i * args.per_caller + k) % corpus.len()].clone())
                .collect()
        })
        .collect();
    let started = Instant::now();
    let (results, extra) = if args.shared_batcher {
        let batcher = Arc::new(BatchEmbedder::with_config(embedder, &config)?);
        let results = call_all(&requests, |texts| batcher.embed(texts));
        let m = batcher.metrics();
        (
            results,
            serde_json::json!({ "batches": m.batches, "peak_rss_bytes": m.peak_rss_bytes }),
        )
    } else {
        let service = EmbedService::with_config(embedder, &config)?;
        let results = call_all(&requests, |texts| {
            service.embed_timeout(texts, Duration::from_secs(600))
        });
        let m = service.metrics();
        service.shutdown(Duration::from_secs(10));
        (
            results,
            serde_json::json!({
                "batches": m.batches,
                "max_requests_per_batch": m.batch_requests.max,
                "max_texts_per_batch": m.batch_texts.max,
                "refused": {
                    "overloaded": m.refused.overloaded,
                    "memory_critical": m.refused.memory_critical,
                },
                "peak_rss_bytes": service.budget().metrics().peak_rss_bytes,
            }),
        )
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut ok = 0;
    for r in &results {
        match r {
            Ok(v) if v.len() == args.per_caller => ok += 1,
            Ok(v) => *errors.entry(format!("{} vectors", v.len())).or_default() += 1,
            Err(e) => *errors.entry(e.report().to_string()).or_default() += 1,
        }
    }
    Ok(serde_json::json!({
        "mode": if args.shared_batcher { "shared-batcher" } else { "service" },
        "callers": args.callers,
        "ok": ok,
        "failed": args.callers - ok,
        "errors": errors,
        "seconds": seconds,
        "details": extra,
    }))
}

/// Runs `call` for every request, each on its own thread, all at once.
fn call_all<F>(requests: &[Vec<String>], call: F) -> Vec<membatch::Result<Vec<Vec<f32>>>>
where
    F: Fn(&[String]) -> membatch::Result<Vec<Vec<f32>>> + Sync,
{
    let start = std::sync::Barrier::new(requests.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|texts| {
                let (call, start) = (&call, &start);
                s.spawn(move || {
                    start.wait();
                    call(texts)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
