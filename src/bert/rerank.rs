//! [`BertReranker`]: cross-encoder reranking with a BERT or RoBERTa-family
//! sequence-classification model (ms-marco-MiniLM, bge-reranker style).

use tokenizers::Tokenizer;

use super::builder::BertEmbedderBuilder;
use super::encoder::{ClassifierHead, Encoder, Packed};
use super::load::read_tensors;
use super::{check_room, forward_error, run_on, tokens_of, BertEmbedder};
use crate::embedder::{ModelInfo, Reranker, Tokens};
use crate::error::{BoxError, Error, Result};
use crate::memory::MemoryProbe;
use crate::source::ModelSource;

/// A cross-encoder on the CPU: `BertForSequenceClassification` (a pooler
/// over `[CLS]` and a one-label classifier, as ms-marco-MiniLM cross-encoders
/// ship) or `XLMRobertaForSequenceClassification` / RoBERTa's (dense, tanh
/// and a projection over `<s>`, as bge-reranker ships), on membatch's
/// packed forward pass. Each (query, document) pair is tokenised as the
/// model's tokenizer pairs texts (segment ids for BERT), truncated longest
/// first to `max_seq_length`; the score is the head's raw logit.
///
/// ```no_run
/// use membatch::{BertReranker, ModelSource, Reranker};
///
/// let reranker = BertReranker::load(ModelSource::dir("models/ms-marco-MiniLM-L-6-v2"))?;
/// let scores = reranker.score("capital of France", &["Paris", "Berlin"])?;
/// # Ok::<(), membatch::Error>(())
/// ```
pub struct BertReranker {
    encoder: Encoder,
    head: ClassifierHead,
    tokenizer: std::sync::Arc<Tokenizer>,
    info: ModelInfo,
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    probe: std::sync::Arc<dyn MemoryProbe>,
    name: String,
}

impl std::fmt::Debug for BertReranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertReranker")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl BertReranker {
    /// Loads a cross-encoder with default settings.
    ///
    /// # Errors
    ///
    /// As [`BertReranker::from_builder`].
    pub fn load(source: impl Into<ModelSource>) -> Result<Self> {
        Self::from_builder(BertEmbedder::builder().source(source))
    }

    /// Loads a cross-encoder with the source, threads, `max_seq_length`,
    /// precision and memory budget of `builder` (its pooling, normalisation
    /// and prompt settings do not apply to scores).
    ///
    /// # Errors
    ///
    /// As [`BertEmbedderBuilder::build`]; [`Error::ModelFile`] when the
    /// weights have no one-label classification head;
    /// [`Error::InvalidConfig`] for a `max_seq_length` below 4 (a pair's
    /// special tokens alone take 3 or 4).
    pub fn from_builder(builder: BertEmbedderBuilder) -> Result<Self> {
        let p = builder.prepare()?;
        if p.settings.max_seq_length < 4 {
            return Err(Error::invalid_config(
                "max_seq_length",
                p.settings.max_seq_length,
                "a (query, document) pair needs at least 4 tokens: its special tokens alone take 3 or 4",
            ));
        }
        let ((encoder, head), probe) = builder.load_checked(&p, |p, int8| {
            read_tensors(&p.files, |tensors| {
                let head = ClassifierHead::load(&tensors, p.config.family, p.config.hidden_size)?;
                let encoder = Encoder::load(tensors, &p.config, p.activation, int8)?;
                Ok((encoder, head))
            })
        })?;
        let info = ModelInfo::new(1, p.settings.max_seq_length)
            .with_shape(p.shape())
            .with_cost_prior(encoder.cost_prior())
            .with_weight_bytes((encoder.weight_bytes() + head.weight_bytes()) as u64);
        let reranker = BertReranker {
            encoder,
            head,
            info,
            tokenizer: p.tokenizer,
            pool: builder.thread_pool()?,
            probe,
            name: p.source.id(),
        };
        tracing::info!(
            model = %p.source,
            weight_bytes = reranker.info.weight_bytes,
            max_seq_length = reranker.info.max_seq_length,
            "reranker ready"
        );
        Ok(reranker)
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_on(self.pool.as_deref(), f)
    }
}

impl Reranker for BertReranker {
    fn info(&self) -> ModelInfo {
        self.info
    }

    /// Each pair as the model's tokenizer pairs texts (segment ids for
    /// BERT), truncated longest first.
    fn tokenize_pairs(&self, query: &str, documents: &[&str]) -> Result<Vec<Tokens>> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<(&str, &str)> = documents.iter().map(|d| (query, *d)).collect();
        let encodings = self
            .run(|| self.tokenizer.encode_batch(pairs, true))
            .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
        Ok(encodings.into_iter().map(tokens_of).collect())
    }

    fn score_tokens(&self, pairs: &[&Tokens]) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|| {
            // A pair without segment ids is all segment 0.
            let longest = pairs.iter().map(|p| p.len()).max().unwrap_or(0);
            let zeros = vec![0u32; longest];
            let batch = Packed::with_types(
                pairs
                    .iter()
                    .map(|p| (p.ids(), p.type_ids().unwrap_or(&zeros[..p.len()]))),
            );
            check_room(&*self.probe, self.encoder.cost_prior(), &batch)?;
            // Each pair's first token's state, gathered chunk by chunk (an
            // empty sequence has none: its state is zeros).
            let h = self.encoder.hidden_size();
            let mut firsts = vec![0f32; batch.spans().count() * h];
            self.encoder
                .forward_each(&batch, |i, states| {
                    if let Some(first) = states.get(..h) {
                        firsts[i * h..(i + 1) * h].copy_from_slice(first);
                    }
                })
                .map_err(|e| forward_error(e, &*self.probe))?;
            Ok(self.head.scores(firsts))
        })
    }
}
