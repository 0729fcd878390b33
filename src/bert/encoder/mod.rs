//! The BERT-family encoder's forward pass on packed sequences (BERT,
//! RoBERTa/XLM-RoBERTa, MPNet: see [`Family`]).
//!
//! Sequences are packed one after another without padding and run through
//! the layers a chunk of whole sequences at a time: the dense layers (QKV,
//! attention output, feed-forward) run as one matrix product over all real
//! tokens of a chunk, and only attention itself runs per sequence and head.
//! Activations live in five buffers sized for the largest chunk, allocated
//! once per batch and reused by every chunk and layer; element-wise steps
//! run in place. See `docs/benchmarks.md` for what this buys over a
//! tensor-per-op forward, and `docs/memory.md` for the chunks.

pub(crate) mod attention;
mod buffer;
mod config;
pub(crate) mod dense;
pub(crate) mod dense_i8;
mod head;
mod int8;
pub(crate) mod kernels;
mod linear;
mod load;
mod relative;
pub(crate) mod tensors;
mod words;

use candle_core::Result as CandleResult;

use crate::embedder::CostPrior;

pub(crate) use config::{Activation, BertConfig, Family};

use buffer::{populate, Buffer};
pub(crate) use head::ClassifierHead;
use linear::Linear;
use load::vector;
pub(crate) use relative::RelativeBias;
pub(crate) use tensors::{SafetensorsFile, Tensors};
use words::WordTable;

/// `out = x·Wᵀ + b` through the `gemm` crate on an unpacked `out × in`
/// weight: the dense product as it ran before the packed kernel, kept for
/// the benches' baseline.
#[cfg(feature = "bench-internals")]
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
pub(super) struct TaskPtr<P>(pub(super) P);
// SAFETY: for raw pointers to buffers only. Every user writes only
// disjoint blocks through a `*mut` pointer, and only reads through a
// `*const` one what no task writes, while the buffer is borrowed by the
// loop; the elements themselves must be safe to send (written from
// another thread) or share (read from several).
unsafe impl<T: Send> Send for TaskPtr<*mut T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for TaskPtr<*mut T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Send for TaskPtr<*const T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for TaskPtr<*const T> {}

impl<P: Copy> TaskPtr<P> {
    /// Taken through a method so closures capture the `Sync` wrapper, not
    /// the bare pointer field.
    pub(super) fn get(self) -> P {
        self.0
    }
}

/// The cost prior of a model of this width, before it is loaded (see
/// [`Encoder::cost_prior`]).
pub(crate) fn cost_prior(hidden: usize, intermediate: usize) -> CostPrior {
    CostPrior::new(4 * (5 * hidden + intermediate) as u64, 4)
        .chunked(chunk_tokens(hidden, intermediate) as u64)
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
    #[error("the model file could not be read while running ({0}); was it changed or truncated after loading?")]
    WeightsUnreadable(String),
    #[error("the system refused {bytes} bytes of buffers for the batch ({reason}); retry with a smaller batch")]
    NoMemory {
        /// The bytes asked for.
        bytes: u64,
        /// What the system said.
        reason: String,
    },
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
    pub(crate) fn check(
        &self,
        vocab: usize,
        max_positions: usize,
        types: usize,
    ) -> Result<(), ForwardError> {
        if let Some(&id) = self.type_ids.iter().find(|&&t| t as usize >= types) {
            return Err(ForwardError::TokenTypeOutOfRange { id, types });
        }
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

/// The buffers of [`Encoder::forward_each`], sized for its largest chunk.
struct Workspace {
    x: Buffer,
    qkv: Buffer,
    context: Buffer,
    inter: Buffer,
    /// Int8 weights expanded for one product at a time.
    scratch: linear::Scratch,
}

/// Bytes of buffers a chunk of the forward pass may hold. Measured on
/// all-MiniLM-L6-v2 (docs/benchmarks.md): chunks of 8 MiB ran 5% slower
/// than the unchunked pass, 12–24 MiB as fast, within the noise.
const CHUNK_BYTES: usize = 16 << 20;

/// Tokens per chunk of the forward pass for a model of this width: as many
/// as [`CHUNK_BYTES`] of buffers hold (5·hidden + intermediate f32 values
/// per token), within 256..=4096 so the products stay tall.
pub(crate) fn chunk_tokens(hidden: usize, intermediate: usize) -> usize {
    let per_token = 4 * (5 * hidden + intermediate);
    (CHUNK_BYTES / per_token.max(1)).clamp(256, 4096)
}

/// Splits `spans` (consecutive, in packed order) into runs of at most
/// `limit` tokens, as index ranges; a sequence longer than `limit` is a run
/// of its own.
fn chunks(spans: &[(usize, usize)], limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut first = 0;
    let mut tokens = 0;
    for (i, (_, len)) in spans.iter().enumerate() {
        // An empty sequence joins the chunk before it, and a chunk holds
        // at least one token before it is closed.
        if tokens > 0 && *len > 0 && tokens + len > limit {
            out.push(first..i);
            first = i;
            tokens = 0;
        }
        tokens += len;
    }
    if first < spans.len() {
        out.push(first..spans.len());
    }
    out
}

/// The packed rows a run of consecutive spans covers.
fn chunk_rows(group: &[(usize, usize)]) -> std::ops::Range<usize> {
    match (group.first(), group.last()) {
        (Some((start, _)), Some((last, len))) => *start..last + len,
        _ => 0..0,
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

impl Encoder {
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

    /// The feed-forward layer's width.
    fn intermediate(&self) -> usize {
        self.layers.first().map_or(0, |l| l.intermediate.outputs())
    }

    /// What [`forward_each`](Self::forward_each) holds at its peak, for a
    /// batcher's first plans. Per token: the hidden states, Q, K and V side
    /// by side, the attention context (5·hidden) and the feed-forward
    /// activation (intermediate; GELU runs in place), all f32, allocated
    /// once per batch and reused by every layer, so depth adds nothing. Per
    /// pair of one text's tokens: one head's f32 attention scores; heads
    /// and texts run a few at a time (one per compute thread), counted for
    /// every text held (an over-count). The buffers hold one chunk of
    /// tokens ([`chunk_tokens`]) at most, or one text when it is longer:
    /// the prior is [`chunked`](CostPrior::chunked) so, and a batch costs
    /// no more past a chunk.
    pub(crate) fn cost_prior(&self) -> CostPrior {
        let intermediate = self.intermediate();
        cost_prior(self.hidden, intermediate)
    }

    /// The last hidden state of every token, `tokens × hidden`, row-major in
    /// the packed order (all of the batch at once: see
    /// [`forward_each`](Self::forward_each) for the chunked form the
    /// embedders use).
    #[cfg(test)]
    pub(crate) fn forward(&self, batch: &Packed) -> Result<Vec<f32>, ForwardError> {
        let mut all = Vec::with_capacity(batch.tokens() * self.hidden);
        self.forward_each(batch, |_, hidden| all.extend_from_slice(hidden))?;
        Ok(all)
    }

    /// Runs the batch through every layer a chunk of whole sequences at a
    /// time and hands each sequence's last hidden states to `each` as
    /// `(index, states)`: its index in `batch` and its `len × hidden`
    /// states (empty for an empty sequence), every sequence once, in batch
    /// order, as soon as its chunk has run.
    ///
    /// Chunks hold up to [`chunk_tokens`] tokens (a longer sequence is a
    /// chunk of its own), so every buffer of the pass (the hidden states,
    /// Q, K and V, the attention context and the feed-forward activation,
    /// 13.5 KiB per token for MiniLM) is as big as the largest chunk, not
    /// as the whole batch: a batch's memory stops growing with its size
    /// past one chunk (or past its longest text, when that is longer). The
    /// products stay hundreds of rows tall (1,213 for MiniLM, 606 for
    /// bert-base's width), which measured as fast as whole batches
    /// (docs/benchmarks.md).
    pub(crate) fn forward_each(
        &self,
        batch: &Packed,
        each: impl FnMut(usize, &[f32]),
    ) -> Result<(), ForwardError> {
        self.forward_chunked(batch, chunk_tokens(self.hidden, self.intermediate()), each)
    }

    /// [`forward_each`](Self::forward_each) with chunks of up to `limit`
    /// tokens.
    fn forward_chunked(
        &self,
        batch: &Packed,
        limit: usize,
        mut each: impl FnMut(usize, &[f32]),
    ) -> Result<(), ForwardError> {
        batch.check(
            self.vocab,
            self.max_positions,
            self.token_type.len() / self.hidden,
        )?;
        let h = self.hidden;
        let spans: Vec<(usize, usize)> = batch.spans().collect();
        let inter_width = self.intermediate();
        let groups = chunks(&spans, limit);
        let rows = groups
            .iter()
            .map(|g| chunk_rows(&spans[g.clone()]).len())
            .max()
            .unwrap_or(0);
        // Allocated once per batch, reused by every chunk and layer, and
        // written at once, so the buffers are charged to the process (and
        // its cgroup) from the batch's start: a limit lowered while the
        // batch runs is refused by the kernel until the batch has ended,
        // instead of being accepted over untouched pages the batch then
        // needs. (Word-table rows the batch is first to use are still read
        // as it runs: a row each, 1.5 KiB for MiniLM.)
        let bytes = (rows * (5 * h + inter_width) * std::mem::size_of::<f32>()) as u64;
        let no_memory = |e: std::io::Error| ForwardError::NoMemory {
            bytes,
            reason: e.to_string(),
        };
        let buffer = |n: usize| Buffer::mapped(n).map_err(no_memory);
        let mut work = Workspace {
            x: buffer(rows * h)?,
            qkv: buffer(rows * 3 * h)?,
            context: buffer(rows * h)?,
            inter: buffer(rows * inter_width)?,
            scratch: linear::Scratch::default(),
        };
        populate(&mut [
            &mut work.x,
            &mut work.qkv,
            &mut work.context,
            &mut work.inter,
        ])
        .map_err(no_memory)?;
        let mut local = Vec::new();
        for group in groups {
            let range = chunk_rows(&spans[group.clone()]);
            local.clear();
            local.extend(
                spans[group.clone()]
                    .iter()
                    .filter(|(_, len)| *len > 0)
                    .map(|(s, l)| (s - range.start, *l)),
            );
            let mut x = std::mem::replace(&mut work.x, Buffer(None));
            let chunk = &mut x[..range.len() * h];
            self.embed(batch, &spans[group.clone()], range.start, chunk)?;
            // The layers' steps run as tasks on the current rayon pool; from
            // a thread outside it, each step would be handed over and waited
            // for (two wake-ups per step, ~50 a layer), so the whole chunk
            // runs on one of the pool's threads instead.
            rayon::scope(|_| self.layers_forward(chunk, &local, &mut work));
            for i in group {
                // A non-empty sequence lies inside its chunk's rows.
                let states = match spans[i] {
                    (_, 0) => &[][..],
                    (start, len) => {
                        &chunk[(start - range.start) * h..(start - range.start + len) * h]
                    }
                };
                each(i, states);
            }
            work.x = x;
        }
        Ok(())
    }

    /// Every layer over the hidden states `x` of the sequences `spans`
    /// (relative to `x`'s first row), in place.
    fn layers_forward(&self, x: &mut [f32], spans: &[(usize, usize)], work: &mut Workspace) {
        let h = self.hidden;
        let tokens = x.len() / h;
        let inter_width = self.intermediate();
        let qkv = &mut work.qkv[..tokens * 3 * h];
        let context = &mut work.context[..tokens * h];
        let inter = &mut work.inter[..tokens * inter_width];
        let scratch = &mut work.scratch;
        for layer in &self.layers {
            layer.qkv.forward(x, qkv, scratch);
            let bias = self.relative.as_ref();
            let products = attention::Products::fastest();
            attention::attend(qkv, context, spans, self.heads, h, bias, products);
            // x ← LayerNorm(x + context·Woᵀ + bo)
            layer.attention_out.forward_add(context, x, scratch);
            layer.attention_norm.apply(x, self.eps);
            layer.intermediate.forward(x, inter, scratch);
            // GELU after the product: run on each task's finished block
            // instead, it measured no faster (docs/benchmarks.md).
            let activation = match self.activation {
                Activation::Gelu => kernels::gelu,
                Activation::GeluTanh => kernels::gelu_tanh,
                Activation::Relu => kernels::relu,
            };
            parallel_rows(inter, inter_width, activation);
            // x ← LayerNorm(x + gelu(inter)·W2ᵀ + b2)
            layer.output.forward_add(inter, x, scratch);
            layer.output_norm.apply(x, self.eps);
        }
    }

    /// Word + position (+ token-type) embeddings of the sequences `spans`
    /// of `batch`, layer-normed, into `x`, whose first row is packed row
    /// `first_row`.
    fn embed(
        &self,
        batch: &Packed,
        spans: &[(usize, usize)],
        first_row: usize,
        x: &mut [f32],
    ) -> Result<(), ForwardError> {
        let h = self.hidden;
        for &(start, len) in spans {
            for pos in 0..len {
                let id = batch.ids[start + pos];
                let kind = batch.type_ids.get(start + pos).copied().unwrap_or(0) as usize;
                let Some(token_type) = self.token_type.get(kind * h..(kind + 1) * h) else {
                    return Err(ForwardError::TokenTypeOutOfRange {
                        id: kind as u32,
                        types: self.token_type.len() / h,
                    });
                };
                let at = start + pos - first_row;
                let row = &mut x[at * h..(at + 1) * h];
                self.word.row(id as usize, h, row)?;
                let position = &self.position[pos * h..(pos + 1) * h];
                for ((v, p), t) in row.iter_mut().zip(position).zip(token_type) {
                    *v += p + t;
                }
            }
        }
        self.embedding_norm.apply(x, self.eps);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::buffer::{touch, POPULATE_PIECE};
    use super::int8::Int8Weights;
    use super::relative::relative_bucket;
    use super::words::OnDemandWords;
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use tensors::TensorRead;

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
    #[cfg(unix)]
    fn buffers_are_zeroed_writable_resident_and_as_long_as_asked() {
        // Empty, under a page, and longer than several populate pieces.
        let sizes = [0, 5000, 3 * POPULATE_PIECE / 4 + 123];
        let mut buffers: Vec<Buffer> = sizes.iter().map(|n| Buffer::mapped(*n).unwrap()).collect();
        populate(&mut buffers.iter_mut().collect::<Vec<_>>()).unwrap();
        for (b, n) in buffers.iter_mut().zip(sizes) {
            assert_eq!(b.len(), n);
            assert!(b.iter().all(|v| *v == 0.0));
            assert_eq!(resident_pages(b.bytes_mut()), pages(b.len() * 4));
            if n > 0 {
                b[n - 1] = 1.5;
                b[0] = -2.0;
                assert_eq!((b[0], b[n - 1]), (-2.0, 1.5));
            }
        }
        // The fallback where the kernel cannot populate: touching.
        let mut b = Buffer::mapped(POPULATE_PIECE).unwrap();
        assert_eq!(resident_pages(b.bytes_mut()), 0);
        touch(b.bytes_mut());
        assert_eq!(resident_pages(b.bytes_mut()), pages(POPULATE_PIECE * 4));
        assert!(b.iter().all(|v| *v == 0.0));
    }

    #[cfg(unix)]
    fn pages(bytes: usize) -> usize {
        bytes.div_ceil(page_size())
    }

    #[cfg(unix)]
    fn page_size() -> usize {
        // SAFETY: sysconf reads a constant of the system.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
    }

    #[cfg(unix)]
    /// The pages of `bytes` (a mapping's start) the kernel holds in memory.
    fn resident_pages(bytes: &mut [u8]) -> usize {
        if bytes.is_empty() {
            return 0;
        }
        let mut flags = vec![0u8; pages(bytes.len())];
        // SAFETY: `bytes` starts a mapping (page-aligned) and `flags` has a
        // byte for each of its pages.
        let r = unsafe {
            libc::mincore(
                bytes.as_mut_ptr().cast(),
                bytes.len(),
                flags.as_mut_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        flags.iter().filter(|f| *f & 1 == 1).count()
    }

    #[test]
    fn chunks_split_at_the_limit_and_keep_long_sequences_whole() {
        let spans = [(0, 3), (3, 0), (3, 2), (5, 9), (14, 1), (15, 1)];
        assert_eq!(chunks(&spans, 5), vec![0..3, 3..4, 4..6]);
        assert_eq!(chunks(&spans, 100), vec![0..6]);
        assert_eq!(chunks(&spans, 1), vec![0..2, 2..3, 3..4, 4..5, 5..6]);
        assert!(chunks(&[], 4).is_empty());
        // Leading empty sequences do not make a chunk of their own.
        assert_eq!(
            chunks(&[(0, 0), (0, 0), (0, 9), (9, 2)], 4),
            vec![0..3, 3..4]
        );
        assert_eq!(chunk_rows(&spans[2..4]), 3..14);
        // Within bounds for any width, and smaller for wider models.
        assert_eq!(chunk_tokens(1, 1), 4096);
        assert_eq!(chunk_tokens(100_000, 400_000), 256);
        assert!(chunk_tokens(768, 3072) < chunk_tokens(384, 1536));
    }

    #[test]
    fn a_batch_in_small_chunks_gives_the_states_of_the_whole_batch() {
        for int8 in [false, true] {
            let e = tiny(int8);
            let seqs: [&[u32]; 5] = [&[1, 2, 3], &[], &[4, 5, 6, 7, 8, 9], &[2], &[9, 8, 7, 6]];
            let batch = Packed::new(seqs);
            let mut whole = Vec::new();
            e.forward_chunked(&batch, usize::MAX, |_, h| whole.extend_from_slice(h))
                .unwrap();
            assert_eq!(whole.len(), 14 * 64);
            let mut chunked = vec![f32::NAN; whole.len()];
            let mut seen = Vec::new();
            let spans: Vec<_> = batch.spans().collect();
            e.forward_chunked(&batch, 4, |i, h| {
                seen.push(i);
                let (start, len) = spans[i];
                assert_eq!(h.len(), len * 64, "sequence {i} gets its own rows");
                chunked[start * 64..start * 64 + h.len()].copy_from_slice(h);
            })
            .unwrap();
            assert_eq!(seen, vec![0, 1, 2, 3, 4], "every sequence once, in order");
            // Every row written (the NaN sentinels gone) and equal.
            let close = whole
                .iter()
                .zip(&chunked)
                .all(|(a, b)| (a - b).abs() <= 1e-6);
            assert!(
                close,
                "int8 {int8}: a chunked row differs or was not written"
            );
        }
    }

    #[test]
    fn word_rows_read_on_demand_equal_the_table_and_a_truncated_file_is_an_error() {
        let (vocab, h) = (40, 48);
        let table: Vec<f32> = (0..vocab * h)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let f = tensors::test_file(&[("word", "F32", vec![vocab, h], tensors::le(&table))]);
        for int8 in [false, true] {
            let source = SafetensorsFile::open(f.path()).unwrap();
            let words = OnDemandWords::new(
                source.row_source("word", &[vocab, h]).unwrap(),
                vocab,
                h,
                int8,
            );
            drop(source);
            let eager = Int8Weights::quantize(&table, h);
            let mut got = vec![0f32; h];
            let mut want = vec![0f32; h];
            for id in [0, 7, vocab - 1, 7] {
                words.row(id, &mut got).unwrap();
                if int8 {
                    eager.expand_rows(id..id + 1, &mut want);
                } else {
                    want.copy_from_slice(&table[id * h..(id + 1) * h]);
                }
                assert_eq!(got, want, "row {id}, int8 {int8}");
            }
            assert_eq!(words.rows_read(), 3);
        }
        // Rows already read stay; a row past a shrunken file's end is a
        // typed error, not a crash.
        let source = SafetensorsFile::open(f.path()).unwrap();
        let words = OnDemandWords::new(
            source.row_source("word", &[vocab, h]).unwrap(),
            vocab,
            h,
            false,
        );
        let mut row = vec![0f32; h];
        words.row(1, &mut row).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(f.path())
            .unwrap()
            .set_len(100)
            .unwrap();
        words.row(1, &mut row).unwrap();
        let err = words.row(vocab - 1, &mut row).unwrap_err();
        assert!(matches!(err, ForwardError::WeightsUnreadable(_)), "{err}");
        // Tables the source cannot read a row at a time are read whole.
        assert!(source.row_source("word", &[h, vocab]).is_none());
        assert!(source.row_source("missing", &[vocab, h]).is_none());
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
            let pairs = Packed::with_types([(&[1u32, 2][..], &[0u32, 1][..]), (&[3], &[2])]);
            let err = e.forward(&pairs).unwrap_err();
            assert!(matches!(
                err,
                ForwardError::TokenTypeOutOfRange { id: 2, types: 2 }
            ));
            let ok = e.forward(&Packed::new([&[1u32; 6][..], &[2, 3]])).unwrap();
            assert_eq!(ok.len(), 8 * 64);
            assert!(ok.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn the_cost_prior_counts_the_four_buffers_and_one_score_matrix() {
        // hidden 64, intermediate 128: 5·64 + 128 floats per token.
        let prior = tiny(false).cost_prior();
        assert_eq!(
            prior,
            CostPrior::new(4 * (5 * 64 + 128), 4).chunked(chunk_tokens(64, 128) as u64)
        );
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
