//! Cutting texts into chunks that fit the model: sized in the model's own
//! tokens by `text-splitter`, with their byte and line ranges.

use membatch::TokenCounter;
use text_splitter::{ChunkConfig, ChunkSizer, TextSplitter};

/// Sizes chunks in content tokens of the model's tokenizer (no special
/// tokens, no truncation).
struct Tokens(TokenCounter);

impl ChunkSizer for Tokens {
    fn size(&self, chunk: &str) -> usize {
        // WordPiece tokenises any text; should a tokenizer ever refuse one,
        // counting it as too large makes the splitter cut it smaller.
        self.0.count(chunk).unwrap_or(usize::MAX)
    }
}

/// Chunk settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkSettingsError {
    /// A chunk of this many tokens has no room for content next to
    /// `[CLS]` and `[SEP]`.
    #[error("chunk tokens must be above 2 ([CLS] and [SEP] take two), not {0}")]
    TooFewTokens(usize),
    /// The overlap is not smaller than a chunk's content tokens.
    #[error("the overlap ({overlap}) must be smaller than a chunk's {capacity} content tokens")]
    OverlapTooLarge {
        /// The overlap asked for.
        overlap: usize,
        /// A chunk's content tokens.
        capacity: usize,
    },
}

/// One chunk of a text: where it is and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'t> {
    /// Byte offset of its start in the text.
    pub start_byte: usize,
    /// Byte offset just past its end.
    pub end_byte: usize,
    /// 1-based line of its first byte.
    pub start_line: usize,
    /// 1-based line of its last byte.
    pub end_line: usize,
    /// The chunk's text.
    pub text: &'t str,
}

/// Cuts texts into chunks of at most `capacity` content tokens (the
/// model's `max_seq_length` minus its two special tokens by default),
/// neighbours sharing `overlap` tokens.
pub struct Chunker {
    splitter: TextSplitter<Tokens>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker").finish_non_exhaustive()
    }
}

impl Chunker {
    /// A chunker counting in `counter`'s tokens for a model that reads
    /// `max_seq_length` tokens: chunks of `chunk_tokens` tokens, special
    /// tokens included (default and most: `max_seq_length`), neighbours
    /// sharing `overlap` tokens (default: 32, at most an eighth of a chunk).
    ///
    /// # Errors
    ///
    /// [`ChunkSettingsError`] when a chunk would hold no content or the
    /// overlap would not be smaller than a chunk.
    pub fn new(
        counter: TokenCounter,
        max_seq_length: usize,
        chunk_tokens: Option<usize>,
        overlap: Option<usize>,
    ) -> Result<Self, ChunkSettingsError> {
        if let Some(n) = chunk_tokens.filter(|&n| n <= 2) {
            return Err(ChunkSettingsError::TooFewTokens(n));
        }
        let capacity = chunk_tokens
            .unwrap_or(max_seq_length)
            .min(max_seq_length)
            .saturating_sub(2);
        let overlap = overlap.unwrap_or(32.min(capacity / 8));
        if capacity == 0 || overlap >= capacity {
            return Err(ChunkSettingsError::OverlapTooLarge { overlap, capacity });
        }
        let config = ChunkConfig::new(capacity)
            .with_sizer(Tokens(counter))
            .with_overlap(overlap)
            .map_err(|_| ChunkSettingsError::OverlapTooLarge { overlap, capacity })?;
        Ok(Chunker {
            splitter: TextSplitter::new(config),
        })
    }

    /// The chunks of `text`, in order.
    pub fn chunks<'t>(&'t self, text: &'t str) -> impl Iterator<Item = Chunk<'t>> + 't {
        let lines = LineIndex::new(text);
        self.splitter
            .chunk_indices(text)
            .map(move |(offset, chunk)| {
                let end = offset + chunk.len();
                Chunk {
                    start_byte: offset,
                    end_byte: end,
                    start_line: lines.line_of(offset),
                    end_line: lines.line_of(end.saturating_sub(1).max(offset)),
                    text: chunk,
                }
            })
    }
}

/// 1-based line numbers of byte offsets.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_are_one_based() {
        let lines = LineIndex::new("a\nbc\n\nd");
        assert_eq!(
            [0, 1, 2, 4, 5, 6].map(|o| lines.line_of(o)),
            [1, 1, 2, 2, 3, 4]
        );
    }
}
