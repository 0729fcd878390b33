//! `soak`: a long run, sampling memory as it goes, to see whether anything
//! grows. Texts go through one `BatchEmbedder` (`--mode batcher`) or
//! through an `EmbedService` from concurrent callers (`--mode service`);
//! the process's RSS (and its cgroup's usage, when it has one) is sampled
//! every few batches. Prints one JSON object: RSS after the first 1,000
//! batches and at the end, the drift between them, and the slope of RSS
//! over the batches after the first 1,000 (least squares, bytes per 1,000
//! batches). `--no-trim` turns the periodic `malloc_trim` off, to show
//! what it contributes.
//!
//! ```text
//! cargo run --release --example soak -- [--texts 100000] [--mode batcher|service]
//!     [--callers 8] [--no-trim]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use membatch::memory::{MemoryBudget, MemoryProbe, SystemProbe};
use membatch::service::EmbedService;
use membatch::{BatchConfig, BatchEmbedder, BertEmbedder, Config};
use membatch_testkit::corpus::mixed_corpus;
use parking_lot::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// Texts in all (5–40 words each, from the mixed corpus).
    #[arg(long, default_value_t = 100_000)]
    texts: usize,
    /// `batcher` or `service`.
    #[arg(long, default_value = "batcher")]
    mode: String,
    /// Concurrent callers in service mode, each sending 1–16 texts a request.
    #[arg(long, default_value_t = 8)]
    callers: usize,
    /// No periodic cleanup (`malloc_trim` only under pressure).
    #[arg(long)]
    no_trim: bool,
}

/// (batches so far, RSS, cgroup usage)
type Sample = (u64, u64, Option<u64>);

fn sample(probe: &SystemProbe, batches: u64) -> Sample {
    let s = probe.snapshot();
    (
        batches,
        s.rss_bytes.unwrap_or(0),
        s.cgroup.map(|c| c.usage_bytes),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = Config::from_env()?;
    let memory = if args.no_trim {
        config
            .memory()
            .clone()
            .into_builder()
            .cleanup_every(0)
            .build()?
    } else {
        config.memory().clone()
    };
    let model = BertEmbedder::from_config(config.model())?;
    let corpus: Vec<String> = mixed_corpus(4 * args.texts, 42)
        .into_iter()
        .filter(|t| t.split(' ').count() <= 40)
        .take(args.texts)
        .collect();
    let probe = Arc::new(SystemProbe::new());
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let started = Instant::now();
    let batches = match args.mode.as_str() {
        "batcher" => {
            let (probe, samples2) = (probe.clone(), samples.clone());
            let budget = MemoryBudget::new(memory);
            let batcher = BatchEmbedder::new(model, budget, BatchConfig::default())?.with_progress(
                move |_| {
                    let mut s = samples2.lock();
                    let n = s.len() as u64 + 1;
                    s.push(sample(&probe, n));
                },
            );
            // Windows of 4,096 texts, as a long-running caller streams them.
            for window in corpus.chunks(4096) {
                batcher.embed(window)?;
            }
            batcher.metrics().batches
        }
        "service" => {
            let service = EmbedService::builder(model)
                .budget(MemoryBudget::new(memory))
                .batch(BatchConfig::default())
                .spawn()?;
            let requests: Vec<&[String]> = {
                let mut out = Vec::new();
                let mut rest = &corpus[..];
                let mut i = 0;
                while !rest.is_empty() {
                    let n = (1 + (i * 7919) % 16).min(rest.len());
                    out.push(&rest[..n]);
                    rest = &rest[n..];
                    i += 1;
                }
                out
            };
            let done = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                let sampler = s.spawn(|| {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let b = service.metrics().batches;
                        samples.lock().push(sample(&probe, b));
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
                let callers: Vec<_> = (0..args.callers)
                    .map(|c| {
                        let (service, requests) = (&service, &requests);
                        s.spawn(move || {
                            for r in requests.iter().skip(c).step_by(args.callers) {
                                service
                                    .embed_timeout(r, Duration::from_secs(600))
                                    .expect("the service answers");
                            }
                        })
                    })
                    .collect();
                for c in callers {
                    c.join().unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                sampler.join().unwrap();
            });
            let b = service.metrics().batches;
            service.shutdown(Duration::from_secs(10));
            b
        }
        other => return Err(format!("--mode {other}: batcher or service").into()),
    };
    let seconds = started.elapsed().as_secs_f64();
    let samples = samples.lock().clone();
    let at_1000 = samples.iter().find(|s| s.0 >= 1000).copied();
    let end = samples.last().copied();
    // Least squares over the samples after the first 1,000 batches.
    let steady: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= 1000)
        .map(|s| (s.0 as f64, s.1 as f64))
        .collect();
    let slope = if steady.len() >= 2 {
        let n = steady.len() as f64;
        let mx = steady.iter().map(|p| p.0).sum::<f64>() / n;
        let my = steady.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = steady.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = steady.iter().map(|p| (p.0 - mx).powi(2)).sum();
        (sxx > 0.0).then(|| sxy / sxx * 1000.0)
    } else {
        None
    };
    let drift = match (at_1000, end) {
        (Some(a), Some(b)) if a.1 > 0 => Some((b.1 as f64 - a.1 as f64) / a.1 as f64 * 100.0),
        _ => None,
    };
    let peak = samples.iter().map(|s| s.1).max();
    println!(
        "{}",
        serde_json::json!({
            "mode": args.mode,
            "trim": !args.no_trim,
            "texts": corpus.len(),
            "batches": batches,
            "seconds": seconds,
            "rss_after_1000_batches_bytes": at_1000.map(|s| s.1),
            "rss_at_end_bytes": end.map(|s| s.1),
            "rss_drift_percent": drift,
            "rss_slope_bytes_per_1000_batches": slope,
            "rss_peak_bytes": peak,
            "cgroup_usage_at_end_bytes": end.and_then(|s| s.2),
            "samples": samples.len(),
        })
    );
    Ok(())
}
