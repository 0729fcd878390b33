//! membatch's own forward pass against candle-transformers' `BertModel` on
//! the same random weights: an independent implementation, with padding and
//! an attention mask where membatch packs sequences.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use crate::common::{max_abs_diff, tiny_config, tiny_model_dir, token_ids, Tiny};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use membatch::{BertEmbedder, Embedder, ModelSource};

/// Mean-pooled, normalised vectors from candle-transformers, texts padded to
/// the longest one.
fn reference(dir: &std::path::Path, ids: &[Vec<u32>], max_positions: usize) -> Vec<Vec<f32>> {
    let dev = Device::Cpu;
    let files = [dir.join("model.safetensors")];
    // SAFETY: the temporary model file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &dev) }.unwrap();
    let model = BertModel::load(vb, &tiny_config(max_positions)).unwrap();
    let len = ids.iter().map(Vec::len).max().unwrap();
    let mut flat = vec![0u32; ids.len() * len];
    let mut mask = vec![0f32; ids.len() * len];
    for (row, seq) in ids.iter().enumerate() {
        flat[row * len..row * len + seq.len()].copy_from_slice(seq);
        mask[row * len..row * len + seq.len()].fill(1.0);
    }
    let flat = Tensor::from_vec(flat, (ids.len(), len), &dev).unwrap();
    let mask = Tensor::from_vec(mask, (ids.len(), len), &dev).unwrap();
    let hidden = model
        .forward(&flat, &flat.zeros_like().unwrap(), Some(&mask))
        .unwrap();
    let m = mask.unsqueeze(2).unwrap();
    let summed = hidden.broadcast_mul(&m).unwrap().sum(1).unwrap();
    let mean = summed.broadcast_div(&m.sum(1).unwrap()).unwrap();
    let norm = mean.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
    mean.broadcast_div(&norm).unwrap().to_vec2().unwrap()
}

#[test]
fn packed_forward_matches_candle_transformers_on_padded_batches() {
    let opts = Tiny {
        max_seq_length: 64,
        ..Tiny::default()
    };
    let dir = tiny_model_dir(&opts);
    let e = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    let texts = [
        "hello",
        "the quick brown fox is eating food . the lazy dog , hello world !",
        "",
        "東京 日本 cafe",
        "a man is eating food . a man is eating food . a man is eating food .",
        "emb embed embedding embeds",
    ];
    let ids = token_ids(&e, &texts);
    assert!(ids.iter().map(Vec::len).max() > ids.iter().map(Vec::len).min());
    let want = reference(dir.path(), &ids, opts.max_position_embeddings);
    let got = e.embed(&texts).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = max_abs_diff(g, w);
        assert!(d <= 1e-5, "text {i} differs by {d}");
    }
}
