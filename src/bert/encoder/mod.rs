//! The BERT-family encoder's forward pass on packed sequences (BERT,
//! RoBERTa/XLM-RoBERTa, MPNet: see [`Family`]).
//!
//! Sequences are packed one after another without padding: the dense layers
//! (QKV, attention output, feed-forward) run as one matrix product over all
//! real tokens of the batch, and only attention itself runs per sequence and
//! head. Activations live in four buffers allocated once per batch and
//! reused by every layer; element-wise steps run in place. See
//! `docs/benchmarks.md` for what this buys over a tensor-per-op forward.

mod attention;
mod config;
pub(crate) mod dense;
pub(crate) mod dense_i8;
mod int8;
pub(crate) mod kernels;
mod linear;
pub(crate) mod tensors;

use candle_core::Result as CandleResult;

use crate::embedder::CostPrior;

pub(crate) use config::{Activation, BertConfig, Family};

use int8::Int8Weights;
use linear::Linear;
pub(crate) use tensors::{SafetensorsFile, Tensors};

/// `out = x·Wᵀ + b` through the `gemm` crate on an unpacked `out × in`
/// weight: the dense product as it ran before the packed kernel, kept for
/// the benches' baseline.
pub(crate) fn gemm_crate_product(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = bias.len();
    let k = weight.len() / n.max(1);
    assert!(
        k > 0 && weight.len() == n * k && x.len().is_multiple_of(k),
        "weight is not out × in"
    );
    let rows = x.len() / k;
    assert_eq!(out.len(), rows * n, "output is not rows × out");
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    // SAFETY: x is rows × k, the weight n × k (read transposed), out
    // rows × n: the extents the strides describe, checked above.
    unsafe {
        linear::matmul(
            linear::Mat::new(x.as_ptr(), k as isize, 1),
            linear::Mat::new(weight.as_ptr(), 1, k as isize),
            linear::MatMut::new(out.as_mut_ptr(), n as isize),
            (rows, n, k),
            1.0,
            true,
            linear::parallelism(),
        )
    }
}

/// A pointer handed to the tasks of one parallel loop: an output buffer of
/// which each task writes its own disjoint block, or an input buffer that
/// they only read. Kept a pointer (not a `usize`) so it keeps its
/// provenance. The loops that use it (attention, the dense products) borrow
/// the buffer for the whole loop, and each says why its tasks' blocks are
/// disjoint.
#[derive(Clone, Copy)]
pub(super) struct Shared<P>(pub(super) P);
// SAFETY: every user writes only disjoint blocks through the pointer, and
// only reads what no task writes, while the buffer is borrowed by the loop.
unsafe impl<P> Send for Shared<P> {}
// SAFETY: as above.
unsafe impl<P> Sync for Shared<P> {}

impl<P: Copy> Shared<P> {
    /// Taken through a method so closures capture the `Sync` wrapper, not
    /// the bare pointer field.
    pub(super) fn get(self) -> P {
        self.0
    }
}

/// `n` zeros, every page written now (`vec![0.0; n]` would map zero pages
/// that are charged only when first written).
fn touched(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0.0);
    v
}

/// The cost prior of a model of this width, before it is loaded (see
/// [`Encoder::cost_prior`]).
pub(crate) fn cost_prior(hidden: usize, intermediate: usize) -> CostPrior {
    CostPrior::new(4 * (5 * hidden + intermediate) as u64, 4)
}

/// Why a batch cannot run; each is a caller or model-file mismatch, never a
/// bug in the batch itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("token id {id} is outside the model's vocabulary of {vocab} (tokenizer and weights do not belong together)")]
    TokenOutOfVocab { id: u32, vocab: usize },
    #[error("a sequence of {len} tokens exceeds the model's {max} positions")]
    TooLong { len: usize, max: usize },
    #[error("token type {id} is outside the model's {types} token types")]
    TokenTypeOutOfRange { id: u32, types: usize },
}

/// Token sequences packed back to back.
#[derive(Debug, Default)]
pub(crate) struct Packed {
    pub(crate) ids: Vec<u32>,
    /// Each token's type (segment) id, for pairs; empty means all 0.
    pub(crate) type_ids: Vec<u32>,
    /// Start of each sequence in `ids`, plus the total at the end.
    pub(crate) offsets: Vec<usize>,
}

impl Packed {
    pub(crate) fn new<'a>(seqs: impl IntoIterator<Item = &'a [u32]>) -> Self {
        // No type ids: every token is of type 0.
        Packed::with_types(seqs.into_iter().map(|s| (s, &[][..])))
    }

    /// Sequences with their token type ids (`(ids, type_ids)` of equal
    /// lengths, for sentence pairs; empty type ids mean type 0).
    pub(crate) fn with_types<'a>(seqs: impl IntoIterator<Item = (&'a [u32], &'a [u32])>) -> Self {
        let mut packed = Packed::default();
        packed.offsets.push(0);
        for (ids, types) in seqs {
            packed.ids.extend_from_slice(ids);
            packed.type_ids.extend_from_slice(types);
            packed.offsets.push(packed.ids.len());
        }
        packed
    }

    pub(crate) fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Checks every sequence against a model's position count and
    /// vocabulary: what the model cannot take is a typed error, not a panic.
    pub(crate) fn check(&self, vocab: usize, max_positions: usize) -> Result<(), ForwardError> {
        if let Some((_, len)) = self.spans().find(|(_, len)| *len > max_positions) {
            return Err(ForwardError::TooLong {
                len,
                max: max_positions,
            });
        }
        if let Some(&id) = self.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ForwardError::TokenOutOfVocab { id, vocab });
        }
        Ok(())
    }

    /// `(start, len)` of each sequence.
    pub(crate) fn spans(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.offsets.windows(2).map(|w| (w[0], w[1] - w[0]))
    }
}

#[derive(Debug, Clone)]
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Norm {
    fn load(vb: &Tensors, size: usize) -> CandleResult<Self> {
        // Older checkpoints name the parameters gamma/beta.
        let pick = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find(|n| vb.contains_tensor(n))
                .unwrap_or(names[0])
        };
        Ok(Norm {
            weight: vector(vb, pick(["weight", "gamma"]), size)?,
            bias: vector(vb, pick(["bias", "beta"]), size)?,
        })
    }
}

impl Norm {
    fn apply(&self, x: &mut [f32], eps: f32) {
        parallel_rows(x, self.weight.len(), |rows| {
            kernels::layer_norm(rows, &self.weight, &self.bias, eps)
        });
    }
}

/// Runs a row-wise step over `x` (rows of `width`) on the current rayon
/// pool, in chunks big enough that splitting pays.
fn parallel_rows(x: &mut [f32], width: usize, step: impl Fn(&mut [f32]) + Send + Sync) {
    use rayon::prelude::*;
    const MIN_CHUNK: usize = 32 * 1024;
    let threads = rayon::current_num_threads();
    if threads <= 1 || x.len() < 2 * MIN_CHUNK || width == 0 {
        return step(x);
    }
    let rows = x.len() / width;
    let rows_per_chunk = rows.div_ceil(threads * 4).max(MIN_CHUNK.div_ceil(width));
    x.par_chunks_mut(rows_per_chunk * width).for_each(step);
}

/// The word embedding table, `vocab × hidden`.
#[derive(Debug, Clone)]
enum WordTable {
    F32(Vec<f32>),
    Int8(Int8Weights),
}

impl WordTable {
    /// Writes row `id` into `out` (`hidden` values).
    fn row(&self, id: usize, hidden: usize, out: &mut [f32]) {
        match self {
            WordTable::F32(t) => out.copy_from_slice(&t[id * hidden..(id + 1) * hidden]),
            WordTable::Int8(t) => t.expand_rows(id..id + 1, out),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            WordTable::F32(t) => 4 * t.len(),
            WordTable::Int8(t) => t.bytes(),
        }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    /// Query, key and value stacked into one `3h × h` product.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// MPNet's attention bias: one learned value per head and relative-position
/// bucket, expanded at load to one value per head and relative position
/// `j - i` of key `j` to query `i`, so a sequence's scores start as a copy.
#[derive(Debug, Clone)]
pub(crate) struct RelativeBias {
    /// `heads × (2·span − 1)`: row `head`, column `j − i + span − 1`.
    table: Vec<f32>,
    /// The longest sequence covered.
    pub(super) span: usize,
}

impl RelativeBias {
    /// Reads `encoder.relative_attention_bias.weight` (`buckets × heads`).
    fn load(vb: &Tensors, buckets: usize, heads: usize, span: usize) -> CandleResult<Self> {
        let weight = matrix(vb, "relative_attention_bias.weight", buckets, heads)?;
        let width = 2 * span.max(1) - 1;
        let mut table = vec![0f32; heads * width];
        for col in 0..width {
            let relative = col as i64 - (span as i64 - 1);
            let bucket = relative_bucket(relative, buckets, 128);
            for head in 0..heads {
                table[head * width + col] = weight[bucket * heads + head];
            }
        }
        Ok(RelativeBias { table, span })
    }

    /// The biases of query `i` against keys `0..len` for `head`.
    pub(crate) fn row(&self, head: usize, i: usize, len: usize) -> &[f32] {
        let width = 2 * self.span - 1;
        let start = head * width + self.span - 1 - i;
        &self.table[start..start + len]
    }
}

/// MPNet's bucket (T5's scheme) for key position minus query position:
/// half the buckets for keys before the query, half for keys after; within
/// each half, exact distances below a quarter of the buckets, then
/// logarithmically wider buckets up to `max_distance`. The logarithm runs
/// in `f32` as transformers' does, so the bucket edges agree.
pub(crate) fn relative_bucket(relative: i64, buckets: usize, max_distance: usize) -> usize {
    let half = (buckets / 2) as i64;
    let n = -relative;
    let mut bucket = if n < 0 { half } else { 0 };
    let n = n.abs();
    let exact = half / 2;
    if n < exact {
        bucket += n;
    } else {
        let scaled = (n as f32 / exact as f32).ln()
            / (max_distance as f64 / exact as f64).ln() as f32
            * (half - exact) as f32;
        bucket += (exact + scaled as i64).min(half - 1);
    }
    bucket as usize
}

/// The weights of a BERT-family encoder and the forward pass over them.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    word: WordTable,
    /// The position table from the family's first position on
    /// (`max_positions × hidden`).
    position: Vec<f32>,
    /// The token-type table (`types × hidden`); one row of zeros for a
    /// family without token types.
    token_type: Vec<f32>,
    /// MPNet's relative-position attention bias.
    relative: Option<RelativeBias>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    activation: Activation,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    eps: f32,
}

fn vector(vb: &Tensors, name: &str, len: usize) -> CandleResult<Vec<f32>> {
    vb.vector(name, len)
}

fn matrix(vb: &Tensors, name: &str, rows: usize, cols: usize) -> CandleResult<Vec<f32>> {
    vb.matrix(name, rows, cols)
}

fn linear(vb: &Tensors, inputs: usize, outputs: usize) -> CandleResult<Linear> {
    stacked(std::slice::from_ref(vb), inputs, outputs, false)
}

/// Layers over the same input (`outputs` each) read and stacked into one,
/// their outputs side by side, so that one product replaces several; in
/// int8 with `int8`.
fn stacked(vbs: &[Tensors], inputs: usize, outputs: usize, int8: bool) -> CandleResult<Linear> {
    let mut weight = Vec::with_capacity(vbs.len() * outputs * inputs);
    let mut bias = Vec::with_capacity(vbs.len() * outputs);
    for vb in vbs {
        weight.extend(matrix(vb, "weight", outputs, inputs)?);
        bias.extend(vector(vb, "bias", outputs)?);
    }
    Ok(if int8 {
        Linear::new_int8(&weight, bias, inputs)
    } else {
        Linear::new(&weight, bias, inputs)
    })
}

impl Encoder {
    /// Reads the weights (names as transformers saves the family's base
    /// model, with or without a head's prefix such as `bert.` or `mpnet.`)
    /// and checks every shape. `activation` is `config.hidden_act`, already
    /// checked by the caller. With `int8`, each tensor is quantised as soon
    /// as it is read, so the whole model never sits in memory in `f32`.
    pub(crate) fn load(
        vb: Tensors,
        config: &BertConfig,
        activation: Activation,
        int8: bool,
    ) -> CandleResult<Self> {
        let mut prefixes = vec![
            String::new(),
            "bert".into(),
            "roberta".into(),
            "mpnet".into(),
        ];
        prefixes.extend(config.model_type.clone());
        let prefix = prefixes
            .into_iter()
            .find(|p| {
                let name = "embeddings.word_embeddings.weight";
                vb.contains_tensor(&if p.is_empty() {
                    name.to_string()
                } else {
                    format!("{p}.{name}")
                })
            })
            .unwrap_or_default();
        let vb = if prefix.is_empty() { vb } else { vb.pp(prefix) };
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        let i = config.intermediate_size;
        if h == 0 || i == 0 || heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!(
                "hidden_size {h} must be a positive multiple of num_attention_heads {heads}, \
                 and intermediate_size {i} positive"
            );
        }
        if !config.family.is_packed() {
            candle_core::bail!("the packed pass does not run {:?} models", config.family);
        }
        let offset = config.position_offset();
        let max_positions = config.max_tokens();
        if max_positions == 0 {
            candle_core::bail!(
                "max_position_embeddings {} leaves no position after the first ({offset})",
                config.max_position_embeddings
            );
        }
        let emb = vb.pp("embeddings");
        let token_type = if config.family == Family::Mpnet {
            vec![0f32; h]
        } else {
            let token_types = config.type_vocab_size.max(1);
            matrix(&emb, "token_type_embeddings.weight", token_types, h)?
        };
        let relative = match config.family {
            Family::Mpnet => Some(RelativeBias::load(
                &vb.pp("encoder"),
                config.relative_attention_num_buckets,
                heads,
                max_positions,
            )?),
            _ => None,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let vb = vb.pp(format!("encoder.layer.{n}"));
            let attn = vb.pp("attention");
            // BERT and RoBERTa: attention.self.{query,key,value},
            // attention.output.{dense,LayerNorm}; MPNet: attention.attn.{q,k,v,o},
            // attention.LayerNorm.
            let (qkv, out, norm) = match config.family {
                Family::Mpnet => (
                    [attn.pp("attn.q"), attn.pp("attn.k"), attn.pp("attn.v")],
                    attn.pp("attn.o"),
                    attn.pp("LayerNorm"),
                ),
                _ => (
                    ["query", "key", "value"].map(|p| attn.pp("self").pp(p)),
                    attn.pp("output.dense"),
                    attn.pp("output.LayerNorm"),
                ),
            };
            let dense = |vb: Tensors, inputs, outputs| stacked(&[vb], inputs, outputs, int8);
            layers.push(Layer {
                qkv: stacked(&qkv, h, h, int8)?,
                attention_out: dense(out, h, h)?,
                attention_norm: Norm::load(&norm, h)?,
                intermediate: dense(vb.pp("intermediate.dense"), h, i)?,
                output: dense(vb.pp("output.dense"), i, h)?,
                output_norm: Norm::load(&vb.pp("output.LayerNorm"), h)?,
            });
        }
        let mut position = matrix(
            &emb,
            "position_embeddings.weight",
            config.max_position_embeddings,
            h,
        )?;
        // Rows before the family's first position are never used.
        position.drain(..offset * h);
        let (name, vocab) = ("word_embeddings.weight", config.vocab_size);
        let word = if int8 {
            // Quantised a few hundred rows at a time: the table (the
            // model's largest tensor) never sits in memory in f32.
            WordTable::Int8(Int8Weights::quantize_from(vocab, h, |rows, out| {
                emb.read_rows(name, (vocab, h), rows, out)
            })?)
        } else {
            WordTable::F32(matrix(&emb, name, vocab, h)?)
        };
        Ok(Encoder {
            word,
            position,
            token_type,
            relative,
            embedding_norm: Norm::load(&emb.pp("LayerNorm"), h)?,
            layers,
            activation,
            hidden: h,
            heads,
            vocab: config.vocab_size,
            max_positions,
            eps: config.layer_norm_eps as f32,
        })
    }

    /// Bytes of weights held (what the model costs resident).
    pub(crate) fn weight_bytes(&self) -> usize {
        let tables = self.position.len()
            + self.token_type.len()
            + self.relative.as_ref().map_or(0, |r| r.table.len());
        let norms = |n: &Norm| 4 * (n.weight.len() + n.bias.len());
        self.word.bytes()
            + 4 * tables
            + norms(&self.embedding_norm)
            + self
                .layers
                .iter()
                .map(|l| {
                    [&l.qkv, &l.attention_out, &l.intermediate, &l.output]
                        .iter()
                        .map(|d| d.weight_bytes())
                        .sum::<usize>()
                        + norms(&l.attention_norm)
                        + norms(&l.output_norm)
                })
                .sum::<usize>()
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// What [`forward`](Self::forward) holds at its peak, for a batcher's
    /// first plans. Per token: the hidden states, Q, K and V side by side,
    /// the attention context (5·hidden) and the feed-forward activation
    /// (intermediate; GELU runs in place), all f32, allocated once per
    /// batch and reused by every layer, so depth adds nothing. Per pair of
    /// one text's tokens: one head's f32 attention scores; heads and texts
    /// run a few at a time (one per compute thread), so this over-counts
    /// big batches a little and never under-counts.
    pub(crate) fn cost_prior(&self) -> CostPrior {
        let intermediate = self.layers.first().map_or(0, |l| l.intermediate.outputs());
        cost_prior(self.hidden, intermediate)
    }

    /// The last hidden state of every token, `tokens × hidden`, row-major in
    /// the packed order.
    pub(crate) fn forward(&self, batch: &Packed) -> Result<Vec<f32>, ForwardError> {
        let h = self.hidden;
        let mut x = self.embed(batch)?;
        let tokens = batch.tokens();
        // Allocated once per batch, reused by every layer, and written at
        // once, so the whole batch is charged to the process (and its
        // cgroup) from its start: a limit lowered while the batch runs is
        // refused by the kernel until the batch has ended, instead of
        // being accepted over untouched pages the batch then needs.
        let mut qkv = touched(tokens * 3 * h);
        let mut context = touched(tokens * h);
        let inter_width = self.layers.first().map_or(0, |l| l.intermediate.outputs());
        let mut inter = touched(tokens * inter_width);
        // Int8 weights expanded for one product at a time.
        let mut scratch = linear::Scratch::default();
        let spans: Vec<(usize, usize)> = batch.spans().filter(|(_, len)| *len > 0).collect();
        for layer in &self.layers {
            layer.qkv.forward(&x, &mut qkv, &mut scratch);
            attention::attend(
                &qkv,
                &mut context,
                &spans,
                self.heads,
                h,
                self.relative.as_ref(),
            );
            // x ← LayerNorm(x + context·Woᵀ + bo)
            layer
                .attention_out
                .forward_add(&context, &mut x, &mut scratch);
            layer.attention_norm.apply(&mut x, self.eps);
            layer.intermediate.forward(&x, &mut inter, &mut scratch);
            // GELU after the product: run on each task's finished block
            // instead, it measured no faster (docs/benchmarks.md).
            let activation = match self.activation {
                Activation::Gelu => kernels::gelu,
                Activation::GeluTanh => kernels::gelu_tanh,
                Activation::Relu => kernels::relu,
            };
            parallel_rows(&mut inter, inter_width, activation);
            // x ← LayerNorm(x + gelu(inter)·W2ᵀ + b2)
            layer.output.forward_add(&inter, &mut x, &mut scratch);
            layer.output_norm.apply(&mut x, self.eps);
        }
        Ok(x)
    }

    /// Word + position (+ token-type) embeddings, layer-normed.
    fn embed(&self, batch: &Packed) -> Result<Vec<f32>, ForwardError> {
        let h = self.hidden;
        let mut x = vec![0f32; batch.tokens() * h];
        batch.check(self.vocab, self.max_positions)?;
        for (start, len) in batch.spans() {
            for pos in 0..len {
                let id = batch.ids[start + pos];
                let kind = batch.type_ids.get(start + pos).copied().unwrap_or(0) as usize;
                let Some(token_type) = self.token_type.get(kind * h..(kind + 1) * h) else {
                    return Err(ForwardError::TokenTypeOutOfRange {
                        id: kind as u32,
                        types: self.token_type.len() / h,
                    });
                };
                let row = &mut x[(start + pos) * h..(start + pos + 1) * h];
                self.word.row(id as usize, h, row);
                let position = &self.position[pos * h..(pos + 1) * h];
                for ((v, p), t) in row.iter_mut().zip(position).zip(token_type) {
                    *v += p + t;
                }
            }
        }
        self.embedding_norm.apply(&mut x, self.eps);
        Ok(x)
    }
}

/// A sequence-classification head over the first token's state:
/// `out(tanh(dense(x)))`. BERT's (`bert.pooler.dense`, `classifier`) and
/// RoBERTa's (`classifier.dense`, `classifier.out_proj`) have this one shape.
#[derive(Debug, Clone)]
pub(crate) struct ClassifierHead {
    dense: Linear,
    out: Linear,
}

impl ClassifierHead {
    /// Reads a one-label head (a relevance score) for `family`.
    pub(crate) fn load(vb: &Tensors, family: Family, hidden: usize) -> CandleResult<Self> {
        let (dense, out) = match family {
            Family::Bert => {
                let prefix = if vb.contains_tensor("bert.pooler.dense.weight") {
                    "bert.pooler.dense"
                } else {
                    "pooler.dense"
                };
                (vb.pp(prefix), vb.pp("classifier"))
            }
            Family::Roberta => (vb.pp("classifier.dense"), vb.pp("classifier.out_proj")),
            other => candle_core::bail!(
                "membatch runs sequence classification for BERT and RoBERTa-family models, not {other:?}"
            ),
        };
        Ok(ClassifierHead {
            dense: linear(&dense, hidden, hidden)?,
            out: linear(&out, hidden, 1)?,
        })
    }

    /// One score per sequence of `batch`, from its first token's row of
    /// `hidden` (the encoder's output).
    pub(crate) fn scores(&self, hidden: &[f32], batch: &Packed) -> Vec<f32> {
        let h = self.dense.outputs();
        let firsts: Vec<f32> = batch
            .spans()
            .flat_map(|(start, len)| {
                // An empty sequence has no first token: its state is zeros.
                let row = if len == 0 { None } else { Some(start) };
                (0..h).map(move |c| row.map_or(0.0, |r| hidden[r * h + c]))
            })
            .collect();
        let n = firsts.len() / h.max(1);
        let mut pooled = vec![0f32; n * h];
        let mut scratch = linear::Scratch::default();
        self.dense.forward(&firsts, &mut pooled, &mut scratch);
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        let mut scores = vec![0f32; n];
        self.out.forward(&pooled, &mut scores, &mut scratch);
        scores
    }

    pub(crate) fn weight_bytes(&self) -> usize {
        [&self.dense, &self.out]
            .iter()
            .map(|d| d.weight_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn tiny(int8: bool) -> Encoder {
        let config: BertConfig = serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 128,
            "max_position_embeddings": 6
        }))
        .unwrap();
        let varmap = VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        Encoder::load(Tensors::new(&vb), &config, Activation::Gelu, int8).unwrap()
    }

    #[test]
    fn packed_spans_follow_the_sequences() {
        let p = Packed::new([&[1u32, 2, 3][..], &[], &[4, 5]]);
        assert_eq!(p.tokens(), 5);
        assert_eq!(p.spans().collect::<Vec<_>>(), vec![(0, 3), (3, 0), (3, 2)]);
    }

    #[test]
    fn out_of_vocabulary_ids_and_overlong_texts_are_errors() {
        for int8 in [false, true] {
            let e = tiny(int8);
            let err = e.forward(&Packed::new([&[1u32, 10][..]])).unwrap_err();
            assert!(matches!(
                err,
                ForwardError::TokenOutOfVocab { id: 10, vocab: 10 }
            ));
            let err = e.forward(&Packed::new([&[1u32; 7][..]])).unwrap_err();
            assert!(matches!(err, ForwardError::TooLong { len: 7, max: 6 }));
            let ok = e.forward(&Packed::new([&[1u32; 6][..], &[2, 3]])).unwrap();
            assert_eq!(ok.len(), 8 * 64);
            assert!(ok.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn the_cost_prior_counts_the_four_buffers_and_one_score_matrix() {
        // hidden 64, intermediate 128: 5·64 + 128 floats per token.
        let prior = tiny(false).cost_prior();
        assert_eq!(prior, CostPrior::new(4 * (5 * 64 + 128), 4));
    }

    #[test]
    fn relative_buckets_match_transformers() {
        // transformers' MPNetEncoder.relative_position_bucket for j − i in
        // −511..=511, stored by scripts/reference/sentence_golden.py.
        #[derive(serde::Deserialize)]
        struct Reference {
            relative_buckets: Vec<usize>,
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/all-mpnet-base-v2.json"
        );
        let reference: Reference = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(reference.relative_buckets.len(), 1023);
        for (k, want) in reference.relative_buckets.iter().enumerate() {
            let relative = k as i64 - 511;
            assert_eq!(
                relative_bucket(relative, 32, 128),
                *want,
                "j − i = {relative}"
            );
        }
    }

    #[test]
    fn int8_holds_fewer_bytes() {
        assert!(tiny(true).weight_bytes() < tiny(false).weight_bytes());
    }
}
