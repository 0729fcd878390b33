//! The [`Embedder`] trait: what any embedding backend offers to membatch.

use std::sync::Arc;

use crate::Result;

/// A text-embedding backend.
///
/// The trait is object-safe and `Send + Sync`, so a service can hold an
/// `Arc<dyn Embedder>` and share it between threads. It is deliberately small:
/// one method does the expensive work ([`embed`](Embedder::embed)); the others
/// are cheap facts a batcher needs to *plan* a batch before paying for a
/// forward pass.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use membatch::{Embedder, Result};
///
/// /// A toy backend: one dimension, the text's length in bytes.
/// struct Length;
///
/// impl Embedder for Length {
///     fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
///         Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
///     }
///     fn dimension(&self) -> usize { 1 }
///     fn max_seq_length(&self) -> usize { usize::MAX }
///     fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
///         Ok(texts.iter().map(|t| t.len()).collect())
///     }
/// }
///
/// let shared: Arc<dyn Embedder> = Arc::new(Length);
/// assert_eq!(shared.embed(&["abc"])?, vec![vec![3.0]]);
/// # Ok::<(), membatch::Error>(())
/// ```
pub trait Embedder: Send + Sync {
    /// Embeds a batch of texts, one vector of [`dimension`](Embedder::dimension)
    /// floats per text, in input order.
    ///
    /// This is the expensive call: the whole slice is run as one batch, so its
    /// memory cost grows with the number of texts and their (padded) length.
    /// Splitting a large input into batches that fit is the caller's job (or
    /// the batcher's). An empty slice returns an empty vector.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`](crate::Error::Tokenization) or
    /// [`Error::Inference`](crate::Error::Inference) when the backend fails.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;

    /// The length of each embedding vector.
    ///
    /// Lets a caller size output buffers and files before any text is embedded.
    fn dimension(&self) -> usize;

    /// The most tokens of one text the model looks at (special tokens
    /// included); longer texts are truncated.
    ///
    /// A batcher needs it to bound the padded length of a batch, which drives
    /// activation memory (and attention memory quadratically).
    fn max_seq_length(&self) -> usize;

    /// The number of tokens each text becomes, special tokens included and
    /// after truncation to [`max_seq_length`](Embedder::max_seq_length).
    ///
    /// Tokenisation is cheap next to a forward pass, so a batcher can sort
    /// texts by length and predict a batch's cost before running it.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenization`](crate::Error::Tokenization) when the tokenizer fails.
    fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>>;

    /// The model's shape, when the backend knows it: lets a batcher predict
    /// a batch's activation memory before running it. Default `None`; the
    /// batcher then assumes a BERT-like shape of width
    /// [`dimension`](Embedder::dimension) and learns the real cost from
    /// measured batches.
    fn shape(&self) -> Option<ModelShape> {
        None
    }

    /// Whether a text's first tokens depend only on its first words: the
    /// tokenizer never merges across whitespace, punctuation or CJK
    /// characters, and truncation keeps the first tokens. BERT's WordPiece
    /// does both. When `true`, a batcher hands a huge text over as a bounded
    /// prefix with the same tokens instead of having it tokenised whole.
    /// Default `false`.
    fn tokenizes_word_by_word(&self) -> bool {
        false
    }
}

/// The sizes of a transformer encoder that drive its activation memory.
///
/// A forward pass over `batch` texts of up to `length` tokens holds
/// activations of about `batch × length × (hidden, intermediate)` floats
/// plus attention scores that grow with `length²` (see
/// [`CostModel`](crate::batch::CostModel)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelShape {
    /// Width of the hidden states (`hidden_size`).
    pub hidden_size: usize,
    /// Attention heads per layer (`num_attention_heads`).
    pub num_heads: usize,
    /// Encoder layers (`num_hidden_layers`).
    pub num_layers: usize,
    /// Width of the feed-forward layer (`intermediate_size`).
    pub intermediate_size: usize,
}

impl ModelShape {
    /// A BERT-like guess from the embedding width alone: heads of 64, a
    /// feed-forward four times as wide, 12 layers.
    pub fn guess_from_dimension(dimension: usize) -> Self {
        let hidden = dimension.max(1);
        ModelShape {
            hidden_size: hidden,
            num_heads: (hidden / 64).max(1),
            num_layers: 12,
            intermediate_size: 4 * hidden,
        }
    }
}

macro_rules! forward_embedder {
    ($($ptr:ty),*) => {$(
        impl<E: Embedder + ?Sized> Embedder for $ptr {
            fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
                (**self).embed(texts)
            }
            fn dimension(&self) -> usize {
                (**self).dimension()
            }
            fn max_seq_length(&self) -> usize {
                (**self).max_seq_length()
            }
            fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
                (**self).token_counts(texts)
            }
            fn shape(&self) -> Option<ModelShape> {
                (**self).shape()
            }
            fn tokenizes_word_by_word(&self) -> bool {
                (**self).tokenizes_word_by_word()
            }
        }
    )*};
}

// Smart pointers to an embedder are embedders, so generic code can take
// `E: Embedder` and still be handed an `Arc<dyn Embedder>`.
forward_embedder!(&E, Box<E>, Arc<E>);
