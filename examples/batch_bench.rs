//! Throughput and peak memory of BatchEmbedder against plain fixed batches,
//! and under memory budgets, on the mixed-length corpus. Prints a Markdown
//! table (docs/benchmarks.md keeps the results).
//!
//! ```text
//! cargo run --release --example batch_bench -- [--texts 256] [--modes fixed:32,batched,budget:512MiB]
//! ```
//!
//! Every mode embeds the same texts with the same loaded model, one after
//! the other in this process. Peak memory is the highest RSS a sampling
//! thread saw during the mode (every 10 ms; the guards reset the kernel's
//! own high-water mark, so it cannot be used). The model's own ~90 MiB is
//! included, as a container would count it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use membatch::batch::BatchEmbedder;
use membatch::memory::{
    AllocatorReclaim, MemoryBudget, MemoryConfig, MemoryLimit, MemoryProbe, SystemProbe,
};
use membatch_testkit::corpus::mixed_corpus;

/// Samples the process's RSS every 10 ms and keeps the highest. A batch
/// holds its buffers for tens of milliseconds or more, so 10 ms sees its
/// peak; every 2 ms the sampler woke 460 times a second and took 1.7% of a
/// core from the run it measures.
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
            let rss = Rss::new();
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss.read(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
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
use membatch::{Embedder, Precision};

/// The process's resident bytes, read as cheaply as the platform allows:
/// on Linux one positioned read of /proc/self/statm (a full
/// `SystemProbe::snapshot` also formats /proc/meminfo, the cgroup's files
/// and /proc/self/status, which every 2 ms had taken 1.6 % of the two cores
/// the measured run competes for); elsewhere the probe's snapshot.
struct Rss {
    /// /proc/self/statm and the page size, read once.
    #[cfg(target_os = "linux")]
    statm: Option<(std::fs::File, u64)>,
    probe: SystemProbe,
}

impl Rss {
    fn new() -> Self {
        Rss {
            #[cfg(target_os = "linux")]
            // SAFETY: sysconf has no preconditions.
            statm: u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .ok()
                .and_then(|page| Some((std::fs::File::open("/proc/self/statm").ok()?, page))),
            probe: SystemProbe::new(),
        }
    }

    fn read(&self) -> u64 {
        #[cfg(target_os = "linux")]
        if let Some((file, page)) = &self.statm {
            use std::os::unix::fs::FileExt;
            let mut buf = [0u8; 128];
            // statm: "size resident shared ..." in pages.
            let pages = file.read_at(&mut buf, 0).ok().and_then(|n| {
                std::str::from_utf8(&buf[..n])
                    .ok()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            });
            if let Some(pages) = pages {
                return pages * page;
            }
        }
        self.probe.snapshot().rss_bytes.unwrap_or(0)
    }
}

#[derive(Parser, Debug)]
struct Args {
    /// Texts in the corpus (mixed_corpus(n, 42)).
    #[arg(long, default_value_t = 256)]
    texts: usize,
    /// Modes to run, comma-separated: `fixed:N` (input order, no checks),
    /// `batched` (default budget), `budget:SIZE`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fixed:32,fixed:64,batched,budget:1GiB,budget:512MiB,budget:300MiB"
    )]
    modes: Vec<String>,
    /// Write the corpus to this file, one text per line, and exit (for
    /// running other implementations on the same texts: benches/compare.sh).
    #[arg(long)]
    dump_corpus: Option<std::path::PathBuf>,
    /// Print one JSON object per mode instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the last mode's vectors to this file: little-endian `f32`,
    /// one text after another in input order (for benches/compare.sh's
    /// cosines).
    #[arg(long)]
    dump_vectors: Option<std::path::PathBuf>,
    /// Weights in f32 or int8.
    #[arg(long, default_value = "f32", value_parser = precision)]
    precision: Precision,
}

fn precision(s: &str) -> Result<Precision, String> {
    s.parse()
        .map_err(|e: membatch::ParsePrecisionError| e.to_string())
}

struct Row {
    mode: String,
    seconds: f64,
    peak_rss: u64,
    batches: u64,
    padding: f64,
    vectors: Vec<Vec<f32>>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(path) = &args.dump_corpus {
        let corpus = mixed_corpus(args.texts, 42);
        // The generator makes single-line texts; the file has one per line.
        std::fs::write(path, corpus.join("\n") + "\n")?;
        return Ok(());
    }
    let model = membatch::BertEmbedderBuilder::from(membatch::Config::from_env()?.model().clone())
        .precision(args.precision)
        .build()?;
    let corpus = mixed_corpus(args.texts, 42);
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let counts = model
        .tokenize(&texts)?
        .iter()
        .map(|t| t.len())
        .collect::<Vec<usize>>();
    let tokens: usize = counts.iter().sum();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    eprintln!(
        "corpus: {} texts, {} tokens ({:.1} per text); threads: {threads}; cores: {}",
        texts.len(),
        tokens,
        tokens as f64 / texts.len() as f64,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut rows = Vec::new();
    for mode in &args.modes {
        AllocatorReclaim.trim();
        let sampler = Sampler::start();
        let start = Instant::now();
        let (vectors, batches, padding) = if let Some(n) = mode.strip_prefix("fixed:") {
            let n: usize = n.parse()?;
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(n) {
                out.extend(model.embed(chunk)?);
            }
            let padded: usize = counts
                .chunks(n)
                .map(|c| c.len() * c.iter().max().unwrap_or(&0))
                .sum();
            (
                out,
                texts.len().div_ceil(n) as u64,
                padded as f64 / tokens as f64,
            )
        } else {
            let memory = match mode.strip_prefix("budget:") {
                Some(size) => MemoryConfig::builder()
                    .limit(MemoryLimit::parse("budget", size)?)
                    .build()?,
                None => MemoryConfig::default(),
            };
            let batcher = BatchEmbedder::new(
                &model,
                MemoryBudget::new(memory),
                *membatch::Config::from_env()?.batch(),
            )?;
            let out = batcher.embed(&texts)?;
            let m = batcher.metrics();
            (out, m.batches, m.padding_ratio())
        };
        let seconds = start.elapsed().as_secs_f64();
        let peak_rss = sampler.stop();
        eprintln!("{mode}: {seconds:.1} s");
        rows.push(Row {
            mode: mode.clone(),
            seconds,
            peak_rss,
            batches,
            padding,
            vectors,
        });
    }

    if let (Some(path), Some(last)) = (&args.dump_vectors, rows.last()) {
        let bytes: Vec<u8> = last
            .vectors
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(path, bytes)?;
    }
    if args.json {
        for r in &rows {
            let line = serde_json::json!({
                "mode": r.mode,
                "texts": texts.len(),
                "tokens": tokens,
                "seconds": r.seconds,
                "texts_per_second": texts.len() as f64 / r.seconds,
                "tokens_per_second": tokens as f64 / r.seconds,
                "batches": r.batches,
                "padding_ratio": r.padding,
                "peak_rss_bytes": r.peak_rss,
            });
            println!("{line}");
        }
        return Ok(());
    }
    let base = rows.iter().find(|r| r.mode == "batched").map(|r| r.seconds);
    println!();
    println!("| mode | texts/s | tokens/s | vs batched | batches | padding ratio | peak RSS | max diff vs first |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let diff = r
            .vectors
            .iter()
            .zip(&rows[0].vectors)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
        println!(
            "| {} | {:.2} | {:.0} | {} | {} | {:.2} | {} MiB | {:.1e} |",
            r.mode,
            texts.len() as f64 / r.seconds,
            tokens as f64 / r.seconds,
            base.map_or("-".into(), |b| format!("{:.0}%", 100.0 * b / r.seconds)),
            r.batches,
            r.padding,
            r.peak_rss >> 20,
            diff
        );
    }
    Ok(())
}
