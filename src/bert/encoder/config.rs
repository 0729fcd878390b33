//! The fields of a BERT-family `config.json` the encoder reads.

use serde::Deserialize;

/// The activation between the feed-forward layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `x·Φ(x)` with the exact erf (transformers' `"gelu"`).
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    pub(crate) const SUPPORTED: &'static str = "gelu, gelu_new, gelu_pytorch_tanh, relu";

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

fn default_position() -> String {
    "absolute".into()
}

fn default_type_vocab() -> usize {
    2
}

fn default_buckets() -> usize {
    32
}

/// The encoder families the packed pass runs. They share BERT's layer
/// (self-attention, then a two-layer feed-forward, each with a residual
/// and a post-LayerNorm) and differ in their embeddings, attention bias
/// and tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `bert`: absolute positions from 0, token types.
    Bert,
    /// `roberta`, `xlm-roberta`, `camembert`: BERT's layer with positions
    /// numbered from `pad_token_id + 1` (transformers' padding-aware
    /// position ids), one token type.
    Roberta,
    /// `mpnet`: RoBERTa's positions, no token types, and a learned bias per
    /// head and relative-position bucket added to every layer's attention
    /// scores.
    Mpnet,
    /// `distilbert`: run by candle-transformers' `DistilBertModel`.
    DistilBert,
    /// `modernbert`: run by candle-transformers' `ModernBert` (rotary
    /// positions, GeGLU, alternating global and sliding-window attention).
    ModernBert,
}

impl Family {
    pub(crate) fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Family::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(Family::Roberta),
            "mpnet" => Some(Family::Mpnet),
            "distilbert" => Some(Family::DistilBert),
            "modernbert" => Some(Family::ModernBert),
            _ => None,
        }
    }

    /// The family an `architectures` entry names, for configs without a
    /// `model_type`.
    pub(crate) fn from_architecture(architecture: &str) -> Option<Self> {
        [
            ("Bert", Family::Bert),
            ("XLMRoberta", Family::Roberta),
            ("Roberta", Family::Roberta),
            ("Camembert", Family::Roberta),
            ("MPNet", Family::Mpnet),
            ("DistilBert", Family::DistilBert),
            ("ModernBert", Family::ModernBert),
        ]
        .into_iter()
        .find_map(|(prefix, family)| architecture.starts_with(prefix).then_some(family))
    }

    /// Whether membatch's packed pass runs this family (else candle's
    /// model for it does).
    pub(crate) fn is_packed(self) -> bool {
        matches!(self, Family::Bert | Family::Roberta | Family::Mpnet)
    }
}

/// A BERT-family `config.json` (transformers' `BertConfig`, `MPNetConfig`,
/// `RobertaConfig`), the fields that shape the forward pass.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub(crate) vocab_size: usize,
    // The aliases are DistilBERT's and ModernBERT's names for the same sizes.
    #[serde(alias = "dim")]
    pub(crate) hidden_size: usize,
    #[serde(alias = "n_layers")]
    pub(crate) num_hidden_layers: usize,
    #[serde(alias = "n_heads")]
    pub(crate) num_attention_heads: usize,
    #[serde(alias = "hidden_dim")]
    pub(crate) intermediate_size: usize,
    pub(crate) max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub(crate) type_vocab_size: usize,
    #[serde(default = "default_eps", alias = "norm_eps")]
    pub(crate) layer_norm_eps: f64,
    #[serde(
        default = "default_act",
        alias = "activation",
        alias = "hidden_activation"
    )]
    pub(crate) hidden_act: String,
    #[serde(default = "default_position")]
    pub(crate) position_embedding_type: String,
    #[serde(default)]
    pub(crate) model_type: Option<String>,
    /// The padding token, from which RoBERTa-style positions are numbered.
    #[serde(default)]
    pub(crate) pad_token_id: Option<usize>,
    /// MPNet's relative-position buckets.
    #[serde(default = "default_buckets")]
    pub(crate) relative_attention_num_buckets: usize,
    /// Set by the loader from `model_type` (or `architectures`).
    #[serde(skip, default = "bert")]
    pub(crate) family: Family,
    /// The whole file, for the families candle's models read themselves.
    #[serde(skip)]
    pub(crate) raw: serde_json::Value,
}

fn bert() -> Family {
    Family::Bert
}

impl BertConfig {
    /// Where position ids start: 0 for BERT, `pad_token_id + 1` for the
    /// RoBERTa-style families (transformers numbers the positions of
    /// non-padding tokens from there).
    pub(crate) fn position_offset(&self) -> usize {
        match self.family {
            Family::Bert | Family::DistilBert | Family::ModernBert => 0,
            Family::Roberta | Family::Mpnet => self.pad_token_id.unwrap_or(1) + 1,
        }
    }

    /// The longest sequence the position table holds.
    pub(crate) fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset())
    }
}
