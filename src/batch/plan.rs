//! Pure planning steps: length order, batch choice, and the bounded prefix
//! of a huge text.

use super::cost::CostModel;
use crate::embedder::Embedder;
use crate::error::{Error, Result};

/// Texts are counted in chunks of this many, so that a million inputs never
/// hold a million tokenizer encodings at once.
const COUNT_CHUNK: usize = 1024;

/// Each text's byte length after the bounded-prefix cut ([`bounded_len`])
/// and its token count, in input order.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    pub(crate) ends: Vec<usize>,
    pub(crate) counts: Vec<usize>,
}

/// Cuts huge texts to a bounded prefix and counts every text's tokens, in
/// chunks of [`COUNT_CHUNK`].
///
/// # Errors
///
/// The embedder's tokenization errors; [`Error::EmbedderContract`] when it
/// returns another number of counts than texts.
pub(crate) fn measure<E: Embedder + ?Sized, S: AsRef<str>>(
    embedder: &E,
    texts: &[S],
) -> Result<Measured> {
    let max_seq = embedder.max_seq_length();
    let mut m = Measured {
        ends: Vec::with_capacity(texts.len()),
        counts: Vec::with_capacity(texts.len()),
    };
    for chunk in texts.chunks(COUNT_CHUNK) {
        let mut slices = Vec::with_capacity(chunk.len());
        for t in chunk {
            let t = t.as_ref();
            let end = bounded_len(embedder, t, max_seq)?;
            m.ends.push(end);
            slices.push(&t[..end]);
        }
        let counts = embedder.token_counts(&slices)?;
        if counts.len() != slices.len() {
            return Err(Error::EmbedderContract {
                method: "token_counts",
                expected: slices.len(),
                got: counts.len(),
            });
        }
        m.counts.extend(counts);
    }
    Ok(m)
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

/// How many of the next texts (token counts `remaining`, longest first) the
/// next batch takes: at most `rule`, at most `max_tokens` padded tokens, and
/// no more than fit in `room` bytes. `None` when not even one fits in `room`.
pub(crate) fn batch_len(
    remaining: &[usize],
    rule: usize,
    cost: &CostModel,
    room: u64,
    max_tokens: Option<usize>,
) -> Option<usize> {
    let padded = *remaining.first()?;
    let mut n = rule.min(remaining.len());
    if let Some(max) = max_tokens {
        n = n.min((max / padded.max(1)).max(1));
    }
    let n = n.min(cost.max_batch_within(padded, room));
    (n > 0).then_some(n)
}

/// The byte length of a prefix of `text` that truncates to the same tokens
/// as the whole text, so that a huge text is never tokenised whole.
///
/// Tries prefixes of 16, 64, 256, … bytes per token of `max_seq_length`,
/// each ending at the last word boundary before that size, and takes the
/// first that already holds `max_seq_length` tokens (counts come after
/// truncation, so that means "at least"). With a tokenizer that works word by
/// word ([`Embedder::tokenizes_word_by_word`]) the words before the cut get
/// the same tokens either way, and truncation keeps only those. Without
/// such a tokenizer, or when no prefix qualifies, the whole length is
/// returned.
pub(crate) fn bounded_len<E: Embedder + ?Sized>(
    embedder: &E,
    text: &str,
    max_seq_length: usize,
) -> Result<usize> {
    if !embedder.tokenizes_word_by_word() {
        return Ok(text.len());
    }
    let mut limit = max_seq_length.max(16).saturating_mul(16);
    while limit < text.len() {
        if let Some(cut) = boundary_before(text, limit) {
            let counts = embedder.token_counts(&[&text[..cut]])?;
            if counts.first().is_some_and(|&n| n >= max_seq_length) {
                return Ok(cut);
            }
        }
        limit = limit.saturating_mul(4);
    }
    Ok(text.len())
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

    #[test]
    fn longest_first_is_stable() {
        assert_eq!(longest_first(&[3, 9, 3, 9, 1]), [1, 3, 0, 2, 4]);
        assert!(longest_first(&[]).is_empty());
    }

    #[test]
    fn the_smallest_limit_decides() {
        let c = cost();
        let big = u64::MAX;
        assert_eq!(batch_len(&[10; 100], 16, &c, big, None), Some(16));
        assert_eq!(batch_len(&[10; 5], 16, &c, big, None), Some(5));
        assert_eq!(batch_len(&[10; 100], 16, &c, big, Some(35)), Some(3));
        assert_eq!(
            batch_len(&[10; 100], 16, &c, big, Some(5)),
            Some(1),
            "one text always passes the token limit"
        );
        let room = c.estimate(4, 10);
        assert_eq!(batch_len(&[10; 100], 16, &c, room, None), Some(4));
        assert_eq!(
            batch_len(&[10; 100], 16, &c, c.estimate(1, 10) - 1, None),
            None
        );
        assert_eq!(batch_len(&[], 16, &c, big, None), None);
    }

    /// Counts whitespace-separated words plus two special tokens.
    struct Words;
    impl Embedder for Words {
        fn tokenizes_word_by_word(&self) -> bool {
            true
        }
        fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>> {
            unreachable!("not embedded")
        }
        fn dimension(&self) -> usize {
            1
        }
        fn max_seq_length(&self) -> usize {
            unreachable!("passed explicitly")
        }
        fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
            Ok(texts
                .iter()
                .map(|t| t.split_whitespace().count() + 2)
                .collect())
        }
    }

    #[test]
    fn a_huge_text_is_cut_after_enough_words_at_whitespace() {
        let text = "wörd ".repeat(100_000);
        let cut = bounded_len(&Words, &text, 128).unwrap();
        assert!(cut < text.len() / 10, "{cut}");
        assert!(text[cut..].starts_with(' '), "cut before whitespace");
        // Without word-by-word tokenisation nothing is cut.
        struct Opaque;
        impl Embedder for Opaque {
            fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>> {
                unreachable!()
            }
            fn dimension(&self) -> usize {
                1
            }
            fn max_seq_length(&self) -> usize {
                unreachable!()
            }
            fn token_counts(&self, _: &[&str]) -> Result<Vec<usize>> {
                unreachable!("never asked")
            }
        }
        assert_eq!(bounded_len(&Opaque, &text, 128).unwrap(), text.len());
        assert!(Words.token_counts(&[&text[..cut]]).unwrap()[0] >= 128);
    }

    #[test]
    fn short_texts_and_texts_without_enough_words_stay_whole() {
        assert_eq!(bounded_len(&Words, "a b c", 128).unwrap(), 5);
        // Mostly whitespace: no prefix holds 128 words, so nothing is cut.
        let sparse = format!("{}{}", " ".repeat(1 << 20), "x ".repeat(10));
        assert_eq!(bounded_len(&Words, &sparse, 128).unwrap(), sparse.len());
        // One giant word: no boundary to cut at.
        let word = "x".repeat(1 << 16);
        assert_eq!(bounded_len(&Words, &word, 128).unwrap(), word.len());
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
