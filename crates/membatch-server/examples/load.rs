//! `load`: many concurrent clients against a running `membatch-server`,
//! or (`--reference`) the same texts through the library's
//! `BatchEmbedder` in this process, for the ratio.
//!
//! ```text
//! cargo run --release -p membatch-server --example load -- --url http://127.0.0.1:3000 \
//!     [--clients 64] [--requests 10000] [--min-texts 1] [--max-texts 16] [--pid PID]
//! cargo run --release -p membatch-server --example load -- --reference [--requests 10000]
//! ```
//!
//! Request `i` holds 1–16 texts (5–40 words) from the mixed corpus, the
//! same for the same `--requests` in both modes. Each client sends its
//! share one after another. With `--pid`, the server's RSS is read from
//! `/proc/PID/status` after the first 1,000 requests and at the end.
//! Prints one JSON object.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use membatch::{BatchEmbedder, BertEmbedder, Config, Embedder};
use membatch_testkit::corpus::mixed_corpus;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Fewest texts per request.
    #[arg(long, default_value_t = 1)]
    min_texts: usize,
    /// Most texts per request.
    #[arg(long, default_value_t = 16)]
    max_texts: usize,
    /// The server's process id, to read its RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// Embed the same texts with the library in this process instead.
    #[arg(long)]
    reference: bool,
}

/// The requests: texts of 5–40 words from the mixed corpus, 1–16 each.
fn requests(args: &Args) -> Vec<Vec<String>> {
    let short: Vec<String> = mixed_corpus(20_000, 42)
        .into_iter()
        .filter(|t| t.split(' ').count() <= 40)
        .collect();
    let span = args.max_texts - args.min_texts + 1;
    let mut next = 0;
    (0..args.requests)
        .map(|i| {
            let n = args.min_texts + (i * 7919) % span;
            (0..n)
                .map(|_| {
                    next += 1;
                    short[next % short.len()].clone()
                })
                .collect()
        })
        .collect()
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let requests = requests(&args);
    let texts: usize = requests.iter().map(Vec::len).sum();
    if args.reference {
        let config = Config::from_env()?;
        let model = BertEmbedder::from_config(config.model())?;
        let all: Vec<&str> = requests.iter().flatten().map(String::as_str).collect();
        let tokens: usize = model.tokenize(&all)?.iter().map(|t| t.len()).sum();
        let batcher = BatchEmbedder::with_config(model, &config)?;
        let started = Instant::now();
        // In windows, as a long-running caller would: flat memory.
        for window in all.chunks(4096) {
            batcher.embed(window)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({
                "mode": "library",
                "texts": texts,
                "tokens": tokens,
                "seconds": seconds,
                "texts_per_second": texts as f64 / seconds,
                "tokens_per_second": tokens as f64 / seconds,
            })
        );
        return Ok(());
    }

    let url = format!("{}/v1/embeddings", args.url.trim_end_matches('/'));
    let done = AtomicUsize::new(0);
    let statuses: Mutex<BTreeMap<u16, usize>> = Mutex::new(BTreeMap::new());
    let errors: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
    let rss_after_1000: Mutex<Option<u64>> = Mutex::new(None);
    let tokens = AtomicUsize::new(0);
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|c| {
                let (url, requests, args) = (&url, &requests, &args);
                let (done, statuses, errors, rss_after_1000, tokens) =
                    (&done, &statuses, &errors, &rss_after_1000, &tokens);
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(300))
                        .build();
                    let mut latencies = Vec::new();
                    for r in requests.iter().skip(c).step_by(args.clients) {
                        let body = json!({"input": r, "model": "load"}).to_string();
                        let t = Instant::now();
                        let result = agent
                            .post(url)
                            .set("content-type", "application/json")
                            .send_string(&body);
                        let elapsed = t.elapsed();
                        let status = match result {
                            Ok(resp) => {
                                let v: serde_json::Value =
                                    serde_json::from_str(&resp.into_string().unwrap_or_default())
                                        .unwrap_or_default();
                                let n = v["data"].as_array().map_or(0, |d| d.len());
                                if n == r.len() {
                                    tokens.fetch_add(
                                        v["usage"]["total_tokens"].as_u64().unwrap_or(0) as usize,
                                        Ordering::Relaxed,
                                    );
                                    latencies.push(elapsed);
                                    200
                                } else {
                                    *errors
                                        .lock()
                                        .unwrap()
                                        .entry(format!("{n} vectors for {}", r.len()))
                                        .or_default() += 1;
                                    0
                                }
                            }
                            Err(ureq::Error::Status(code, resp)) => {
                                if code != 429 && code != 503 {
                                    let body = resp.into_string().unwrap_or_default();
                                    *errors.lock().unwrap().entry(body).or_default() += 1;
                                }
                                code
                            }
                            Err(e) => {
                                *errors.lock().unwrap().entry(e.to_string()).or_default() += 1;
                                0
                            }
                        };
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n == 1000 {
                            *rss_after_1000.lock().unwrap() = args.pid.and_then(rss_of);
                        }
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let ok = latencies.len();
    let ok_texts: usize = texts * ok / requests.len().max(1);
    let rss_end = args.pid.and_then(rss_of);
    let rss_1000 = *rss_after_1000.lock().unwrap();
    let drift = match (rss_1000, rss_end) {
        (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) / a as f64 * 100.0),
        _ => None,
    };
    let statuses = statuses.into_inner().unwrap();
    println!(
        "{}",
        json!({
            "mode": "server",
            "clients": args.clients,
            "requests": requests.len(),
            "ok": ok,
            "status_counts": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "other_errors": errors.into_inner().unwrap(),
            "seconds": seconds,
            "requests_per_second": requests.len() as f64 / seconds,
            "texts_per_second": ok_texts as f64 / seconds,
            "tokens_per_second": tokens.load(Ordering::Relaxed) as f64 / seconds,
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
            "rss_after_1000_requests_bytes": rss_1000,
            "rss_at_end_bytes": rss_end,
            "rss_drift_percent": drift,
        })
    );
    Ok(())
}
