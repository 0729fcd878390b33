//! Splitting a file into chunks that fit the model: sized in the model's
//! own tokens by `text-splitter`, with their byte and line ranges.

use membatch::{BertEmbedder, Embedder, TokenCounter};
use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, ChunkSizer, TextSplitter};

use crate::support::{fail, Failure};

/// Lines of each chunk kept in `chunks.jsonl` for showing hits.
const PREVIEW_LINES: usize = 4;

/// One chunk of one file, as stored in `chunks.jsonl`.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct ChunkMeta {
    pub(super) path: String,
    pub(super) start_byte: usize,
    pub(super) end_byte: usize,
    pub(super) start_line: usize,
    pub(super) end_line: usize,
    pub(super) text: String,
}

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

/// Cuts texts into chunks of at most `capacity` content tokens (the
/// model's `max_seq_length` minus its two special tokens by default),
/// neighbours sharing `overlap` tokens.
pub(super) struct Chunker {
    splitter: TextSplitter<Tokens>,
}

impl Chunker {
    /// A chunker for `embedder`, from the `--chunk-tokens` and `--overlap`
    /// flags.
    pub(super) fn new(
        embedder: &BertEmbedder,
        chunk_tokens: Option<usize>,
        overlap: Option<usize>,
    ) -> Result<Self, Failure> {
        let max_seq = embedder.max_seq_length();
        if chunk_tokens.is_some_and(|n| n <= 2) {
            return Err(fail(
                "--chunk-tokens must be above 2 ([CLS] and [SEP] take two)",
            ));
        }
        let capacity = chunk_tokens
            .unwrap_or(max_seq)
            .min(max_seq)
            .saturating_sub(2);
        let overlap = overlap.unwrap_or(32.min(capacity / 8));
        if capacity == 0 || overlap >= capacity {
            return Err(fail(format!(
                "--overlap ({overlap}) must be smaller than a chunk's {capacity} content tokens"
            )));
        }
        let config = ChunkConfig::new(capacity)
            .with_sizer(Tokens(embedder.token_counter()?))
            .with_overlap(overlap)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Chunker {
            splitter: TextSplitter::new(config),
        })
    }

    /// The chunks of `text` (a file at `path`), each with its metadata and
    /// full text.
    pub(super) fn chunks<'t>(
        &'t self,
        path: &'t str,
        text: &'t str,
    ) -> impl Iterator<Item = (ChunkMeta, String)> + 't {
        let lines = LineIndex::new(text);
        self.splitter
            .chunk_indices(text)
            .map(move |(offset, chunk)| {
                let end = offset + chunk.len();
                let meta = ChunkMeta {
                    path: path.to_string(),
                    start_byte: offset,
                    end_byte: end,
                    start_line: lines.line_of(offset),
                    end_line: lines.line_of(end.saturating_sub(1).max(offset)),
                    text: chunk
                        .lines()
                        .take(PREVIEW_LINES)
                        .collect::<Vec<_>>()
                        .join("\n"),
                };
                (meta, chunk.to_string())
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
