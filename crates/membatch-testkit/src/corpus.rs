//! Deterministic inputs for benchmarks and tests, and the cosine they are
//! compared by.
//!
//! Every benchmark in membatch measures the same kind of input: a mixed-length
//! corpus of English-like texts of 5 to 300 words, most of them short (word
//! counts are log-uniform, so the mean is near 70 words, about 90 tokens) and
//! a long tail that reaches the model's sequence limit. The same seed always
//! gives the same texts, on every machine and with every version of membatch.

/// The fewest words a generated text has.
pub const MIN_WORDS: usize = 5;
/// The most words a generated text has.
pub const MAX_WORDS: usize = 300;

/// Returns `n` texts of [`MIN_WORDS`] to [`MAX_WORDS`] words, the same for the
/// same `seed`.
///
/// ```
/// let a = membatch_testkit::corpus::mixed_corpus(100, 42);
/// assert_eq!(a, membatch_testkit::corpus::mixed_corpus(100, 42));
/// assert!(a.iter().all(|t| (5..=300).contains(&t.split(' ').count())));
/// ```
pub fn mixed_corpus(n: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64(seed);
    let (lo, hi) = ((MIN_WORDS as f64).ln(), ((MAX_WORDS + 1) as f64).ln());
    (0..n)
        .map(|_| {
            let words = (lo + rng.unit() * (hi - lo)).exp() as usize;
            text_of(words.clamp(MIN_WORDS, MAX_WORDS), &mut rng)
        })
        .collect()
}

/// Cosine similarity of two vectors, in f64 (0 when either is zero): how
/// benchmarks and tests compare an approximate embedding with an exact one.
///
/// ```
/// use membatch_testkit::corpus::cosine;
/// assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
/// assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
/// assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
/// ```
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let denom = norm(a) * norm(b);
    if denom == 0.0 {
        0.0
    } else {
        dot / denom
    }
}

/// Returns `n` texts of exactly `words` words each, the same for the same
/// `seed`: with 300 words every text reaches a 256-token sequence limit,
/// the costliest input a model sees.
///
/// ```
/// let long = membatch_testkit::corpus::uniform_corpus(3, 300, 1);
/// assert!(long.iter().all(|t| t.split(' ').count() == 300));
/// ```
pub fn uniform_corpus(n: usize, words: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64(seed);
    (0..n).map(|_| text_of(words, &mut rng)).collect()
}

/// One text of exactly `words` words: sentences of 4 to 15 words, capitalised
/// and ended with a full stop.
fn text_of(words: usize, rng: &mut SplitMix64) -> String {
    let mut out = String::with_capacity(words * 7);
    let mut left_in_sentence = 0;
    for i in 0..words {
        if left_in_sentence == 0 {
            left_in_sentence = 4 + rng.below(12);
        }
        let word = WORDS[rng.below(WORDS.len())];
        if i > 0 {
            out.push(' ');
        }
        let sentence_start = out.is_empty() || out.ends_with(". ");
        if sentence_start {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(word);
        }
        left_in_sentence -= 1;
        if left_in_sentence == 0 || i + 1 == words {
            out.push('.');
        }
    }
    out
}

/// SplitMix64, written out here rather than taken from `rand` because its
/// output must never change: benchmark figures are only comparable across
/// versions if the corpus is bit-for-bit the same, and `rand` does not promise
/// value stability for its default generators.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer in [0, n).
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

/// Common English words plus some technical ones, so the corpus tokenises like
/// real prose and code comments do: mostly whole-word tokens, some split words.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "she",
    "other",
    "its",
    "may",
    "these",
    "what",
    "them",
    "than",
    "some",
    "him",
    "time",
    "into",
    "only",
    "do",
    "could",
    "new",
    "about",
    "two",
    "first",
    "then",
    "also",
    "any",
    "like",
    "our",
    "over",
    "after",
    "such",
    "made",
    "many",
    "most",
    "people",
    "between",
    "state",
    "system",
    "water",
    "memory",
    "model",
    "batch",
    "limit",
    "process",
    "container",
    "embedding",
    "sentence",
    "vector",
    "token",
    "length",
    "service",
    "request",
    "server",
    "thread",
    "kernel",
    "matrix",
    "function",
    "module",
    "compiler",
    "library",
    "function",
    "parser",
    "network",
    "database",
    "cache",
    "latency",
    "throughput",
    "allocation",
    "configuration",
    "deployment",
    "performance",
    "distributed",
    "asynchronous",
    "serialization",
    "benchmark",
    "regression",
    "river",
    "mountain",
    "village",
    "history",
    "music",
    "garden",
    "market",
    "winter",
    "summer",
    "language",
    "science",
    "research",
    "student",
    "teacher",
    "government",
    "economy",
    "quickly",
    "carefully",
    "often",
    "never",
    "always",
    "perhaps",
    "together",
    "because",
    "although",
    "however",
    "therefore",
    "small",
    "large",
    "early",
    "late",
    "important",
    "different",
    "possible",
    "simple",
    "complex",
    "reliable",
    "efficient",
    "measure",
    "build",
    "write",
    "read",
    "run",
    "find",
    "keep",
    "grow",
    "shrink",
    "retry",
    "return",
    "split",
    "merge",
    "sort",
    "count",
    "store",
    "load",
    "fetch",
    "send",
    "receive",
    "observe",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_texts_other_seed_other_texts() {
        assert_eq!(mixed_corpus(50, 7), mixed_corpus(50, 7));
        assert_ne!(mixed_corpus(50, 7), mixed_corpus(50, 8));
    }

    #[test]
    fn word_counts_span_the_range_and_skew_short() {
        let corpus = mixed_corpus(2000, 1);
        let counts: Vec<usize> = corpus.iter().map(|t| t.split(' ').count()).collect();
        assert!(counts.iter().all(|c| (MIN_WORDS..=MAX_WORDS).contains(c)));
        assert!(counts.iter().any(|&c| c < 10));
        assert!(counts.iter().any(|&c| c > 250));
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        assert!((50.0..100.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn texts_are_sentences() {
        for t in mixed_corpus(20, 3) {
            assert!(t.ends_with('.'), "{t}");
            assert!(t.chars().next().unwrap().is_uppercase(), "{t}");
        }
    }
}
