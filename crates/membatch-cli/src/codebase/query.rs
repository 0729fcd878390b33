//! Searching an index: the k rows most similar to a question, scored in
//! place from the memory-mapped matrix.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use membatch::{BertEmbedderBuilder, EmbedOptions, Embedder, MemoryBudget};
use serde::Serialize;

use super::writer::{read_current, ChunkMeta, Meta};
use super::{model_config, model_id, query_prompt, Args};
use membatch_bin::{fail, Failure};

#[derive(Serialize)]
struct Hit<'a> {
    score: f32,
    path: &'a str,
    start_line: usize,
    end_line: usize,
    text: &'a str,
}

/// Opens `path`, naming it in the error.
fn open(path: &Path) -> Result<File, Failure> {
    File::open(path).map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// Prints the `k` chunks of the index in `index` most similar to `text`.
pub(super) fn query(args: &Args, index: &Path, text: &str, k: usize) -> Result<(), Failure> {
    let Some(current) = read_current(index)? else {
        return Err(fail(format!(
            "{}: no index here (run `membatch codebase index <DIR> --out {}` first)",
            index.display(),
            index.display()
        )));
    };
    // Open everything before the (slower) model load: a later `index` run
    // may replace this generation, but open files stay readable.
    let gen = index.join(current);
    let meta_path = gen.join("meta.json");
    let meta: Meta = serde_json::from_reader(open(&meta_path)?)
        .map_err(|e| fail(format!("{}: {e}", meta_path.display())))?;
    let matrix_file = open(&gen.join("embeddings.safetensors"))?;
    let chunks_file = open(&gen.join("chunks.jsonl"))?;

    let config = model_config(args)?;
    // Loaded under the budget the settings give (MemoryBudget::admit_load).
    let embedder = BertEmbedderBuilder::from(config.model().clone())
        .budget(MemoryBudget::new(config.memory().clone()))
        .build()?;
    let model_id = model_id(&config, &embedder)?;
    if meta.model != model_id {
        return Err(fail(format!(
            "the index was built with {} but this query would use {model_id}; pass the same \
             --model and model settings (--dimensions, --precision, ...)",
            meta.model
        )));
    }
    let options = EmbedOptions::new().with_prompt(query_prompt(args, &embedder));
    let q = embedder.embed_with(&[text], &options)?.remove(0);

    // SAFETY: a generation's files are never modified once written; a later
    // run writes a new generation and removes this one, which leaves the
    // mapping valid.
    let map = unsafe { memmap2::Mmap::map(&matrix_file)? };
    let tensors = safetensors::SafeTensors::deserialize(&map)?;
    let matrix = tensors.tensor("embeddings")?;
    let dim = meta.dimension;
    let q_norm = norm(&q).max(f32::MIN_POSITIVE);
    // The k best rows, scored in place: memory stays flat in the index size.
    let mut best: std::collections::BinaryHeap<std::cmp::Reverse<(Score, usize)>> =
        std::collections::BinaryHeap::with_capacity(k + 1);
    for (row, bytes) in matrix.data().chunks_exact(dim * 4).enumerate() {
        let (mut dot, mut sq) = (0f32, 0f32);
        for (c, qi) in bytes.chunks_exact(4).zip(&q) {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            dot += x * qi;
            sq += x * x;
        }
        let score = dot / (q_norm * sq.sqrt()).max(f32::MIN_POSITIVE);
        if score.is_nan() {
            continue;
        }
        best.push(std::cmp::Reverse((Score(score), row)));
        if best.len() > k {
            best.pop();
        }
    }
    let mut wanted: Vec<(usize, f32)> = best
        .into_iter()
        .map(|std::cmp::Reverse((Score(s), r))| (r, s))
        .collect();
    wanted.sort_by_key(|&(r, _)| r);
    let mut hits: Vec<(f32, ChunkMeta)> = Vec::new();
    let mut next = wanted.iter().peekable();
    for (row, line) in BufReader::new(chunks_file).lines().enumerate() {
        let Some(&&(r, s)) = next.peek() else { break };
        if r == row {
            hits.push((s, serde_json::from_str(&line?)?));
            next.next();
        }
    }
    hits.sort_by(|a, b| b.0.total_cmp(&a.0));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (score, m) in &hits {
        if args.json {
            let hit = Hit {
                score: *score,
                path: &m.path,
                start_line: m.start_line,
                end_line: m.end_line,
                text: &m.text,
            };
            writeln!(out, "{}", serde_json::to_string(&hit)?)?;
        } else {
            writeln!(
                out,
                "{score:.3}  {}:{}-{}",
                m.path, m.start_line, m.end_line
            )?;
            for l in m.text.lines() {
                writeln!(out, "        {l}")?;
            }
        }
    }
    Ok(())
}

/// A similarity that orders totally (NaN never gets here).
#[derive(Clone, Copy, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn norm(a: &[f32]) -> f32 {
    a.iter().map(|x| x * x).sum::<f32>().sqrt()
}
