//! Pure planning steps: length order, batch choice, and the bounded prefix
//! of a huge text.

use super::cost::CostModel;
use crate::embedder::{Embedder, Tokens};
use crate::error::{Error, Result};

/// Texts are tokenized in chunks of this many, so that a million inputs
/// never hold a million tokenizer encodings at once.
pub(crate) const TOKENIZE_CHUNK: usize = 1024;

/// Tokenizes `texts`, each once, huge ones as their bounded prefix
/// ([`bounded_tokens`]), in chunks of [`TOKENIZE_CHUNK`]: one [`Tokens`]
/// per text, in input order.
///
/// # Errors
///
/// The embedder's tokenization errors; [`Error::EmbedderContract`] when it
/// returns another number of results than texts.
pub(crate) fn tokenize<E: Embedder + ?Sized, S: AsRef<str>>(
    embedder: &E,
    texts: &[S],
) -> Result<Vec<Tokens>> {
    let info = embedder.info();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(TOKENIZE_CHUNK) {
        // Texts short enough to tokenize whole go in one call; a huge one
        // is cut to its bounded prefix on its own.
        let mut whole: Vec<&str> = Vec::with_capacity(chunk.len());
        let mut cut: Vec<(usize, Tokens)> = Vec::new();
        for (i, t) in chunk.iter().enumerate() {
            let t = t.as_ref();
            match bounded_tokens(embedder, t, info.max_seq_length, info.word_by_word)? {
                Some(tokens) => cut.push((i, tokens)),
                None => whole.push(t),
            }
        }
        let tokens = checked(embedder.tokenize(&whole)?, whole.len())?;
        let mut tokens = tokens.into_iter();
        let mut cut = cut.into_iter().peekable();
        for i in 0..chunk.len() {
            match cut.next_if(|(at, _)| *at == i) {
                Some((_, t)) => out.push(t),
                None => out.push(tokens.next().expect("one result per whole text")),
            }
        }
    }
    Ok(out)
}

/// `tokens` when there are `expected` of them, else the contract error.
fn checked(tokens: Vec<Tokens>, expected: usize) -> Result<Vec<Tokens>> {
    if tokens.len() != expected {
        return Err(Error::EmbedderContract {
            method: "tokenize",
            expected,
            got: tokens.len(),
        });
    }
    Ok(tokens)
}

/// Input indices ordered longest first; equal lengths keep input order.
///
/// Longest first puts the costliest batches at the start, while the rule's
/// batch size is still small, and calibrates the cost model on them: if the
/// first batches fit, the rest do.
pub(crate) fn longest_first(counts: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
    order
}

/// What planning needs of the texts left to embed, longest first: the
/// longest one's tokens (every text of the next batch is counted at that
/// length) and how many texts there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Remaining {
    pub(crate) padded: usize,
    pub(crate) texts: usize,
}

impl Remaining {
    /// The texts left of `texts`, longest first (none when it is empty).
    pub(crate) fn of(texts: &[&Tokens]) -> Self {
        Remaining {
            padded: texts.first().map_or(0, |t| t.len()),
            texts: texts.len(),
        }
    }
}

/// How many of the `remaining` texts the next batch takes: at most `rule`,
/// at most `max_tokens` padded tokens, and no more than fit in `room` bytes.
/// `None` when not even one fits in `room` (or none is left).
pub(crate) fn batch_len(
    remaining: Remaining,
    rule: usize,
    cost: &CostModel,
    room: u64,
    max_tokens: Option<usize>,
) -> Option<usize> {
    let padded = remaining.padded;
    let mut n = rule.min(remaining.texts);
    if let Some(max) = max_tokens {
        n = n.min((max / padded.max(1)).max(1));
    }
    let n = n.min(cost.max_batch_within(padded, room));
    (n > 0).then_some(n)
}

/// The tokens of a prefix of a huge `text` that truncates to the same
/// tokens as the whole text, so that a huge text is never tokenized whole;
/// `None` when the text is to be tokenized whole.
///
/// For a text longer than 16 bytes per token of `max_seq_length`, tries
/// prefixes of 16, 64, 256, … bytes per token, each ending at the last
/// word boundary before that size, and takes the first that truncation
/// cuts. With a tokenizer that works word by word
/// ([`ModelInfo::word_by_word`](crate::embedder::ModelInfo::word_by_word)) the words
/// before the cut get the same tokens either way, and truncation keeps
/// only those. Without such a tokenizer, or when no prefix is cut, `None`.
pub(crate) fn bounded_tokens<E: Embedder + ?Sized>(
    embedder: &E,
    text: &str,
    max_seq_length: usize,
    word_by_word: bool,
) -> Result<Option<Tokens>> {
    if !word_by_word {
        return Ok(None);
    }
    let mut limit = max_seq_length.max(16).saturating_mul(16);
    while limit < text.len() {
        if let Some(cut) = boundary_before(text, limit) {
            let tokens = checked(embedder.tokenize(&[&text[..cut]])?, 1)?;
            if let Some(t) = tokens.into_iter().find(Tokens::is_truncated) {
                return Ok(Some(t));
            }
        }
        limit = limit.saturating_mul(4);
    }
    Ok(None)
}

/// The byte offset of the last word boundary at or before `limit` (not at
/// the start): just before a character that always starts a new word.
fn boundary_before(text: &str, limit: usize) -> Option<usize> {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end]
        .char_indices()
        .rev()
        .find(|&(_, c)| starts_a_word(c))
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
}

/// Whitespace, ASCII punctuation and CJK ideographs: BERT's normaliser and
/// pre-tokenizer split at each, so no word spans them. Vertical tab, form
/// feed and NEL are whitespace to Rust but control characters to BERT,
/// which deletes them and joins the words around them: not boundaries.
fn starts_a_word(c: char) -> bool {
    (c.is_whitespace() && !matches!(c, '\u{b}' | '\u{c}' | '\u{85}'))
        || c.is_ascii_punctuation()
        || is_cjk(c)
}

/// The CJK ideograph blocks BERT's normaliser puts spaces around.
fn is_cjk(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedder::CostPrior;

    fn cost() -> CostModel {
        CostModel::new(CostPrior::guess_from_dimension(64))
    }

    fn left(padded: usize, texts: usize) -> Remaining {
        Remaining { padded, texts }
    }

    #[test]
    fn longest_first_is_stable() {
        assert_eq!(longest_first(&[3, 9, 3, 9, 1]), [1, 3, 0, 2, 4]);
        assert!(longest_first(&[]).is_empty());
    }

    #[test]
    fn the_smallest_limit_decides() {
        let c = cost();
        let big = u64::MAX;
        assert_eq!(batch_len(left(10, 100), 16, &c, big, None), Some(16));
        assert_eq!(batch_len(left(10, 5), 16, &c, big, None), Some(5));
        assert_eq!(batch_len(left(10, 100), 16, &c, big, Some(35)), Some(3));
        assert_eq!(
            batch_len(left(10, 100), 16, &c, big, Some(5)),
            Some(1),
            "one text always passes the token limit"
        );
        let room = c.estimate(4, 10);
        assert_eq!(batch_len(left(10, 100), 16, &c, room, None), Some(4));
        assert_eq!(
            batch_len(left(10, 100), 16, &c, c.estimate(1, 10) - 1, None),
            None
        );
        assert_eq!(batch_len(left(10, 0), 16, &c, big, None), None);
    }

    /// A token per whitespace-separated word plus two special tokens,
    /// truncated at `max` (marked when cut); counts its calls.
    struct Words {
        max: usize,
        word_by_word: bool,
        calls: std::sync::atomic::AtomicUsize,
        /// The byte length of the last text tokenized.
        last: std::sync::atomic::AtomicUsize,
    }

    impl Words {
        fn new(max: usize) -> Self {
            Words {
                max,
                word_by_word: true,
                calls: Default::default(),
                last: Default::default(),
            }
        }
        fn calls(&self) -> usize {
            self.calls.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    impl Embedder for Words {
        fn info(&self) -> crate::embedder::ModelInfo {
            crate::embedder::ModelInfo::new(1, self.max).with_word_by_word(self.word_by_word)
        }
        fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
            self.calls
                .fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = texts.last() {
                self.last
                    .store(t.len(), std::sync::atomic::Ordering::Relaxed);
            }
            Ok(texts
                .iter()
                .map(|t| {
                    let n = t.split_whitespace().count() + 2;
                    Tokens::new(vec![1; n.min(self.max)]).truncated(n > self.max)
                })
                .collect())
        }
        fn embed_tokens(&self, _: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
            unreachable!("not embedded")
        }
    }

    #[test]
    fn a_huge_text_is_cut_after_enough_words_at_whitespace() {
        let text = "wörd ".repeat(100_000);
        let words = Words::new(128);
        let tokens = bounded_tokens(&words, &text, 128, true).unwrap().unwrap();
        assert_eq!(tokens.len(), 128);
        assert!(tokens.is_truncated());
        // 16 bytes per token of 128 already hold enough words: one probe,
        // of a prefix that ends before whitespace.
        assert_eq!(words.calls(), 1);
        let cut = words.last.load(std::sync::atomic::Ordering::Relaxed);
        assert!(cut <= 16 * 128 && cut < text.len(), "{cut}");
        assert!(text[cut..].starts_with(' '), "cut before whitespace");
        // Without word-by-word tokenisation nothing is cut or probed.
        let opaque = Words::new(128);
        assert!(bounded_tokens(&opaque, &text, 128, false)
            .unwrap()
            .is_none());
        assert_eq!(opaque.calls(), 0);
    }

    #[test]
    fn short_texts_and_texts_without_enough_words_stay_whole() {
        let words = Words::new(128);
        assert!(bounded_tokens(&words, "a b c", 128, true)
            .unwrap()
            .is_none());
        assert_eq!(words.calls(), 0, "a short text is not probed");
        // Mostly whitespace: no prefix holds 128 words, so nothing is cut.
        let sparse = format!("{}{}", " ".repeat(1 << 20), "x ".repeat(10));
        assert!(bounded_tokens(&words, &sparse, 128, true)
            .unwrap()
            .is_none());
        // One giant word: no boundary to cut at.
        let word = "x".repeat(1 << 16);
        assert!(bounded_tokens(&words, &word, 128, true).unwrap().is_none());
    }

    #[test]
    fn tokenize_calls_the_tokenizer_once_per_text_in_input_order() {
        let words = Words::new(8);
        let huge = "w ".repeat(10_000);
        let texts: Vec<String> = (0..3000)
            .map(|i| {
                if i == 1500 {
                    huge.clone()
                } else {
                    "w ".repeat(i % 5)
                }
            })
            .collect();
        let tokens = tokenize(&words, &texts).unwrap();
        let lengths: Vec<usize> = tokens.iter().map(Tokens::len).collect();
        let want: Vec<usize> = (0..3000)
            .map(|i| if i == 1500 { 8 } else { i % 5 + 2 })
            .collect();
        assert_eq!(lengths, want);
        assert!(tokens[1500].is_truncated() && !tokens[0].is_truncated());
        // Every text once; the huge one as its (single) probed prefix.
        assert_eq!(words.calls(), 3000);
    }

    #[test]
    fn boundaries_are_where_bert_splits_words() {
        assert_eq!(boundary_before("ab cd", 5), Some(2));
        assert_eq!(boundary_before("ab,cd", 5), Some(2));
        assert_eq!(boundary_before("ab数cd", 7), Some(2));
        assert_eq!(boundary_before("ab\u{3000}cd", 7), Some(2));
        for joiner in ["\u{b}", "\u{c}", "\u{85}"] {
            let t = format!("ab{joiner}cd");
            assert_eq!(
                boundary_before(&t, t.len()),
                None,
                "{joiner:?} joins words in BERT"
            );
        }
        // A limit inside a multi-byte character backs off to a boundary.
        assert_eq!(boundary_before("a é", 3), Some(1));
        assert_eq!(boundary_before(" abc", 4), None, "not at the start");
    }
}
