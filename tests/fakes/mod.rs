//! A simulated machine for batching tests: a fake embedder whose memory
//! cost follows batch × length², and a probe that reports what it spends.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;

use membatch::memory::{MemoryBudget, MemoryConfig, MemoryProbe, MemorySnapshot, Reclaim};
use membatch::PressureLevel;
use membatch::{CostPrior, Embedder, Error, ModelInfo, Result, Tokens};
use parking_lot::Mutex;

pub const MIB: u64 = 1 << 20;

/// The simulated process: a steady `base` and the peak of the work since
/// the last reset, on a 1000 MiB machine.
#[derive(Debug, Default)]
pub struct Machine {
    state: Mutex<MachineState>,
}

#[derive(Debug, Default)]
struct MachineState {
    base: u64,
    peak: u64,
    highest: u64,
}

impl Machine {
    pub fn new(base: u64) -> Arc<Self> {
        let m = Machine::default();
        {
            let mut s = m.state.lock();
            s.base = base;
            s.peak = base;
            s.highest = base;
        }
        Arc::new(m)
    }

    /// Sets the steady state (what the process holds between batches).
    pub fn set_base(&self, base: u64) {
        let mut s = self.state.lock();
        s.base = base;
        s.peak = s.peak.max(base);
        s.highest = s.highest.max(base);
    }

    /// Work that rises `bytes` above the steady state and falls back.
    pub fn spend(&self, bytes: u64) {
        let mut s = self.state.lock();
        s.peak = s.peak.max(s.base + bytes);
        s.highest = s.highest.max(s.base + bytes);
    }

    /// The highest the process ever went.
    pub fn highest(&self) -> u64 {
        self.state.lock().highest
    }

    /// A budget of `budget` bytes over this machine.
    pub fn budget(self: &Arc<Self>, budget: u64) -> MemoryBudget {
        let config = MemoryConfig::builder().max_bytes(budget).build().unwrap();
        MemoryBudget::with_parts(config, self.clone(), self.clone())
    }
}

impl MemoryProbe for Machine {
    fn snapshot(&self) -> MemorySnapshot {
        let s = self.state.lock();
        MemorySnapshot::new(1000 * MIB, 1000 * MIB - s.base)
            .with_process(Some(s.base), Some(s.peak))
    }

    fn reset_peak(&self) -> bool {
        let mut s = self.state.lock();
        s.peak = s.base;
        true
    }
}

impl Reclaim for Machine {
    fn reclaim(&self) {}
}

/// One call to [`Fake::embed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub texts: Vec<String>,
    pub padded: usize,
    pub ok: bool,
}

/// The texts the fakes tokenized, process-wide (so that a lazy loader's
/// tokens and its loaded model's agree): a text's tokens are its number
/// here, then zeros, as many as the fake counts, so that a batch of tokens
/// can say which texts it holds.
#[derive(Debug, Default)]
pub struct Interner;

/// A text's first token is its number plus this, so that tokens the
/// interner did not make are caught rather than read as another text.
const FIRST_ID: u32 = 1 << 30;

/// Each text's number, and the texts by number.
type Interned = (std::collections::HashMap<String, u32>, Vec<String>);

static INTERNED: std::sync::LazyLock<Mutex<Interned>> = std::sync::LazyLock::new(Default::default);

impl Interner {
    /// `text` as `len` tokens (at least one), cut at `max` (and marked so).
    pub fn tokens(&self, text: &str, len: usize, max: usize) -> Tokens {
        let mut guard = INTERNED.lock();
        let (ids, texts) = &mut *guard;
        let id = *ids.entry(text.to_string()).or_insert_with(|| {
            texts.push(text.to_string());
            texts.len() as u32 - 1
        });
        let mut tokens = vec![0; len.clamp(1, max.max(1))];
        tokens[0] = FIRST_ID + id;
        Tokens::new(tokens).truncated(len > max)
    }

    /// The text `tokens` were made from.
    ///
    /// # Panics
    ///
    /// When the interner did not make `tokens` (a test's bug).
    pub fn text(&self, tokens: &Tokens) -> String {
        let id = tokens.ids().first().copied().unwrap_or(0);
        assert!(id >= FIRST_ID, "tokens the fakes did not make: {tokens:?}");
        INTERNED.lock().1[(id - FIRST_ID) as usize].clone()
    }
}

/// Tokens are whitespace-separated words plus two specials, truncated at
/// `max_seq`. A batch costs `per_unit × batch × padded²` bytes. Calls whose
/// number (from 0) is in `refuse` fail with `Error::MemoryPressure`.
#[derive(Debug)]
pub struct Fake {
    pub machine: Arc<Machine>,
    pub max_seq: usize,
    pub per_unit: u64,
    pub refuse: BTreeSet<usize>,
    pub calls: Mutex<Vec<Call>>,
    pub interner: Interner,
}

impl Fake {
    pub fn new(machine: &Arc<Machine>) -> Self {
        Fake {
            machine: machine.clone(),
            max_seq: 256,
            per_unit: 40,
            refuse: BTreeSet::new(),
            calls: Mutex::new(Vec::new()),
            interner: Interner,
        }
    }

    pub fn tokens(&self, text: &str) -> usize {
        words(text).min(self.max_seq)
    }

    /// The vector any text gets, whatever batch it is in.
    pub fn vector(text: &str) -> Vec<f32> {
        let h = blake_ish(text);
        vec![(h % 1_000_003) as f32, text.len() as f32]
    }

    /// Successful calls' batch sizes, in order.
    pub fn sizes(&self) -> Vec<usize> {
        self.calls
            .lock()
            .iter()
            .filter(|c| c.ok)
            .map(|c| c.texts.len())
            .collect()
    }

    /// The cost of a batch as this fake spends it.
    pub fn cost(&self, batch: usize, padded: usize) -> u64 {
        self.per_unit * (batch * padded * padded) as u64
    }
}

/// FNV-1a: a stable hash without a dependency.
fn blake_ish(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Whitespace-separated words plus two special tokens.
fn words(text: &str) -> usize {
    text.split_whitespace().count() + 2
}

impl Embedder for Fake {
    /// A prior whose estimate for one text of 256 tokens,
    /// 4·(256·(5·256 + 1024) + 256²) bytes, is this fake's real cost
    /// (40·256²): the model predicts the fake as well as it predicts
    /// membatch's encoder, and over-predicts shorter texts.
    fn info(&self) -> ModelInfo {
        ModelInfo::new(2, self.max_seq)
            .with_word_by_word(true)
            .with_cost_prior(CostPrior::new(4 * (5 * 256 + 1024), 4))
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        Ok(texts
            .iter()
            .map(|t| self.interner.tokens(t, words(t), self.max_seq))
            .collect())
    }

    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<String> = batch.iter().map(|t| self.interner.text(t)).collect();
        let padded = batch.iter().map(|t| t.len()).max().unwrap_or(0);
        let mut calls = self.calls.lock();
        let refused = self.refuse.contains(&calls.len());
        calls.push(Call {
            texts: texts.clone(),
            padded,
            ok: !refused,
        });
        if refused {
            return Err(Error::MemoryPressure {
                needed: 1,
                available: 0,
                level: PressureLevel::Critical,
            });
        }
        self.machine.spend(self.cost(batch.len(), padded));
        Ok(texts.iter().map(|t| Fake::vector(t)).collect())
    }
}

/// A text of `words` words, distinct per `id`.
pub fn text(id: usize, words: usize) -> String {
    let mut t = format!("t{id}");
    for w in 1..words {
        t.push_str(&format!(" w{}", (id * 7 + w) % 97));
    }
    t
}

/// A scripted embedder for service tests: a text's vector is
/// [`Fake::vector`] of it; a batch holding a text that contains `PANIC`
/// panics and one holding `ERROR` fails; while the gate is closed every
/// batch waits at it; each batch sleeps `delay`; every embedded text is
/// recorded.
#[derive(Debug, Default)]
pub struct Scripted {
    pub delay: std::time::Duration,
    pub gate: Gate,
    pub embedded: Mutex<Vec<String>>,
    pub batches: Mutex<Vec<usize>>,
    /// Every batch panics (a model that can never run).
    pub always_panic: bool,
    pub interner: Interner,
    /// Texts tokenized (one count per text).
    pub tokenized: std::sync::atomic::AtomicUsize,
}

/// A gate batches wait at while it is closed.
#[derive(Debug, Default)]
pub struct Gate {
    closed: Mutex<bool>,
    opened: parking_lot::Condvar,
    /// Batches waiting at the gate now.
    pub waiting: std::sync::atomic::AtomicUsize,
}

impl Gate {
    pub fn close(&self) {
        *self.closed.lock() = true;
    }
    pub fn open(&self) {
        *self.closed.lock() = false;
        self.opened.notify_all();
    }
    fn pass(&self) {
        use std::sync::atomic::Ordering;
        let mut closed = self.closed.lock();
        if *closed {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while *closed {
                self.opened.wait(&mut closed);
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
    /// Waits until a batch is held at the gate.
    pub fn wait_for_a_batch(&self) {
        let start = std::time::Instant::now();
        while self.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "no batch reached the gate"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Embedder for Scripted {
    fn info(&self) -> ModelInfo {
        ModelInfo::new(2, 256)
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        self.tokenized
            .fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(texts
            .iter()
            .map(|t| self.interner.tokens(t, words(t), 256))
            .collect())
    }

    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<String> = batch.iter().map(|t| self.interner.text(t)).collect();
        self.gate.pass();
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        self.batches.lock().push(texts.len());
        if self.always_panic || texts.iter().any(|t| t.contains("PANIC")) {
            panic!("scripted panic");
        }
        if texts.iter().any(|t| t.contains("ERROR")) {
            return Err(Error::Inference(Arc::new(std::io::Error::other(
                "scripted failure",
            ))));
        }
        self.embedded.lock().extend(texts.iter().cloned());
        Ok(texts.iter().map(|t| Fake::vector(t)).collect())
    }
}

/// A scripted cross-encoder for service tests: a pair's tokens are its
/// query's and document's words plus three specials (at most 256); its
/// score is the document's length in bytes less the query's; while the
/// gate is closed every batch waits at it; scored documents and batch
/// sizes are recorded.
#[derive(Debug, Default)]
pub struct ScriptedReranker {
    pub gate: Gate,
    pub scored: Mutex<Vec<String>>,
    pub batches: Mutex<Vec<usize>>,
    pub interner: Interner,
}

impl ScriptedReranker {
    /// The score a (query, document) pair gets.
    pub fn score_of(query: &str, document: &str) -> f32 {
        document.len() as f32 - query.len() as f32
    }
}

impl membatch::Reranker for ScriptedReranker {
    fn info(&self) -> ModelInfo {
        ModelInfo::new(1, 256)
    }

    fn tokenize_pairs(&self, query: &str, documents: &[&str]) -> Result<Vec<Tokens>> {
        Ok(documents
            .iter()
            .map(|d| {
                let len = words(query) + words(d) - 1;
                self.interner.tokens(&format!("{query}\u{1}{d}"), len, 256)
            })
            .collect())
    }

    /// Panics on a batch holding a document that contains `PANIC`.
    fn score_tokens(&self, pairs: &[&Tokens]) -> Result<Vec<f32>> {
        self.gate.pass();
        self.batches.lock().push(pairs.len());
        if pairs
            .iter()
            .any(|p| self.interner.text(p).contains("PANIC"))
        {
            panic!("scripted reranker panic");
        }
        Ok(pairs
            .iter()
            .map(|p| {
                let pair = self.interner.text(p);
                let (query, document) = pair.split_once('\u{1}').expect("a pair");
                self.scored.lock().push(document.to_string());
                ScriptedReranker::score_of(query, document)
            })
            .collect())
    }
}
