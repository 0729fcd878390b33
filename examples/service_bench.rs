//! `service_bench`: an `EmbedService` under 1, 8 and 64 concurrent callers,
//! against one `BatchEmbedder` call on the same texts; and the service's
//! own cost per request, measured with a backend that does no work.
//!
//! ```text
//! cargo run --release --example service_bench -- [--requests 512] [--callers 1,8,64]
//! ```
//!
//! Every request is 1–8 short texts (5–40 words) from the mixed corpus;
//! each caller sends its share of the requests one after the other (a
//! closed loop), so with 64 callers up to 64 requests are in flight. Prints
//! a Markdown table (docs/benchmarks.md keeps the results).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use membatch::memory::{MemoryProbe, SystemProbe};
use membatch::service::EmbedService;
use membatch::{BatchEmbedder, BertEmbedder, Config, Embedder, ModelInfo, Result, Tokens};
use membatch_testkit::corpus::mixed_corpus;

#[derive(Parser, Debug)]
struct Args {
    /// Requests per run.
    #[arg(long, default_value_t = 512)]
    requests: usize,
    /// Concurrent callers per run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    callers: Vec<usize>,
}

/// Does no work: tokens are words + 2, vectors are one float.
struct Free;

impl Embedder for Free {
    fn info(&self) -> ModelInfo {
        ModelInfo::new(1, 256)
    }
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        Ok(texts
            .iter()
            .map(|t| Tokens::new(vec![0; t.split(' ').count() + 2]))
            .collect())
    }
    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        Ok(vec![vec![0.0]; batch.len()])
    }
}

/// Samples the process's RSS every 2 ms and keeps the highest.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            let probe = SystemProbe::new();
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(probe.snapshot().rss_bytes.unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Sampler { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler thread");
        self.peak.load(Ordering::Relaxed)
    }
}

/// What one run measured.
struct Run {
    seconds: f64,
    latencies: Vec<Duration>,
    peak_rss: u64,
    batches: u64,
    max_requests_per_batch: f64,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Sends every request through `service` from `callers` threads, each
/// sending its share in turn.
fn drive(service: &EmbedService, requests: &[Vec<String>], callers: usize) -> Run {
    let sampler = Sampler::start();
    let start = std::sync::Barrier::new(callers);
    let began = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|c| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    requests
                        .iter()
                        .skip(c)
                        .step_by(callers)
                        .map(|r| {
                            let t = Instant::now();
                            let v = service
                                .embed_timeout(r, Duration::from_secs(600))
                                .expect("the service answers");
                            assert_eq!(v.len(), r.len());
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let seconds = began.elapsed().as_secs_f64();
    latencies.sort();
    let m = service.metrics();
    Run {
        seconds,
        latencies,
        peak_rss: sampler.stop(),
        batches: m.batches,
        max_requests_per_batch: m.batch_requests.max,
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = Config::from_env()?;
    // 1–8 short texts per request, from the mixed corpus.
    let short: Vec<String> = mixed_corpus(8 * args.requests, 42)
        .into_iter()
        .filter(|t| t.split(' ').count() <= 40)
        .collect();
    let mut pool = short.iter().cycle();
    let requests: Vec<Vec<String>> = (0..args.requests)
        .map(|i| {
            (0..1 + (i * 7) % 8)
                .map(|_| pool.next().unwrap().clone())
                .collect()
        })
        .collect();
    let texts: Vec<&str> = requests.iter().flatten().map(String::as_str).collect();

    let model = Arc::new(BertEmbedder::from_config(config.model())?);
    let tokens: usize = model.tokenize(&texts)?.iter().map(|t| t.len()).sum();
    eprintln!(
        "{} requests, {} texts, {} tokens; cores: {}",
        requests.len(),
        texts.len(),
        tokens,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // The reference: one caller, every text in one BatchEmbedder call.
    let batcher = BatchEmbedder::with_config(model.clone(), &config)?;
    batcher.embed(&texts[..texts.len().min(64)])?; // warm up
    let t = Instant::now();
    batcher.embed(&texts)?;
    let reference = t.elapsed().as_secs_f64();
    println!(
        "| callers | seconds | tokens/s | vs one BatchEmbedder call | p50 latency | p99 latency | batches | most requests in a batch | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| one `BatchEmbedder::embed` of all texts | {reference:.2} | {:.0} | 100% | | | {} | | |",
        tokens as f64 / reference,
        batcher.metrics().batches
    );
    drop(batcher);

    for &callers in &args.callers {
        let service = EmbedService::with_config(model.clone(), &config)?;
        service.embed(&requests[0])?; // warm up
        let run = drive(&service, &requests, callers);
        println!(
            "| {callers} | {:.2} | {:.0} | {:.0}% | {:.1} ms | {:.1} ms | {} | {:.0} | {} MiB (budget {} MiB) |",
            run.seconds,
            tokens as f64 / run.seconds,
            100.0 * reference / run.seconds,
            percentile(&run.latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&run.latencies, 0.99).as_secs_f64() * 1e3,
            run.batches,
            run.max_requests_per_batch,
            run.peak_rss >> 20,
            service.budget().read().budget_bytes >> 20,
        );
        service.shutdown(Duration::from_secs(10));
    }

    // The service's own cost: the same requests through a backend that
    // does no work.
    println!();
    println!("| service overhead (no-op backend) | requests/s | µs per request |");
    println!("|---|---|---|");
    for &callers in &args.callers {
        let service = EmbedService::with_config(Free, &config)?;
        let many: Vec<Vec<String>> = requests.iter().cycle().take(20_000).cloned().collect();
        let run = drive(&service, &many, callers);
        println!(
            "| {callers} callers | {:.0} | {:.1} |",
            many.len() as f64 / run.seconds,
            run.seconds * 1e6 / many.len() as f64
        );
        service.shutdown(Duration::from_secs(10));
    }
    Ok(())
}
