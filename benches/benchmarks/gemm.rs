//! The forward pass's dense products on all-MiniLM-L6-v2's shapes: 2,048
//! tokens × 384 inputs → 1,152 (Q, K, V), 384 (attention output) and 1,536
//! (feed-forward), and 1,536 → 384 (feed-forward output). Throughput is in
//! FLOP (2 per multiply-add), so criterion's "elem/s" reads as FLOP/s; the
//! peak is cores × clock × 32 FLOP/cycle (docs/benchmarks.md gives each
//! host's: 234 GFLOP/s on the 2-core Zen 4 of 2026-11).
//!
//! `packed` is membatch's kernel on weights packed once at load (the
//! fastest this CPU runs; `packed_avx2` is the AVX2 tile on a CPU whose
//! fastest is AVX-512);
//! `gemm_crate` is the `gemm` crate on the unpacked weight (re-packed on
//! every call), as the forward pass ran before; `int8_vnni` (on CPUs with
//! VNNI only) quantises the activations per row and multiplies int8 weights
//! with `vpdpbusd`, counted in the same multiply-adds. Random weights: no
//! model files needed.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use membatch::bert::bench_kernels::{attention, gemm_crate, Dense, DenseInt8};

const TOKENS: usize = 2048;
const SHAPES: [(usize, usize); 4] = [(384, 1152), (384, 384), (384, 1536), (1536, 384)];

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_product_flops");
    for (inputs, outputs) in SHAPES {
        let x = values(TOKENS * inputs, 1);
        let weight = values(outputs * inputs, 2);
        let bias = values(outputs, 3);
        let dense = Dense::new(&weight, &bias, inputs);
        let mut out = vec![0f32; TOKENS * outputs];
        group.throughput(Throughput::Elements((2 * TOKENS * inputs * outputs) as u64));
        let shape = format!("{TOKENS}x{inputs}x{outputs}");
        group.bench_with_input(BenchmarkId::new("packed", &shape), &(), |b, _| {
            b.iter(|| dense.forward(&x, &mut out))
        });
        for kernel in Dense::slower_kernels() {
            if kernel == "generic" {
                continue;
            }
            group.bench_with_input(
                BenchmarkId::new(format!("packed_{kernel}"), &shape),
                &(),
                |b, _| b.iter(|| assert!(dense.forward_on(kernel, &x, &mut out))),
            );
        }
        group.bench_with_input(BenchmarkId::new("gemm_crate", &shape), &(), |b, _| {
            b.iter(|| gemm_crate(&x, &weight, &bias, &mut out))
        });
        if let Some(int8) = DenseInt8::new(&weight, &bias, inputs) {
            group.bench_with_input(BenchmarkId::new("int8_vnni", &shape), &(), |b, _| {
                b.iter(|| int8.forward(&x, &mut out))
            });
        }
    }
    group.finish();
}

/// Two chunks' worth of sequences: mixed lengths up to 256 (1,113
/// tokens), and short ones such as a codebase's small chunks (1,134 tokens).
const MIXED: [usize; 12] = [9, 14, 22, 31, 45, 60, 77, 96, 128, 170, 205, 256];
const SHORT: [usize; 12] = [6, 9, 12, 16, 20, 24, 28, 33, 40, 48, 56, 86];

/// Attention on all-MiniLM-L6-v2's shape (12 heads of 32) over packed
/// sequences, in FLOP of its two products (4·len²·h a sequence; the
/// softmax in between is not counted but runs in both rows).
fn bench_attention(c: &mut Criterion) {
    let (heads, h) = (12, 384);
    let mut group = c.benchmark_group("attention_flops");
    for (set, lengths) in [("mixed", MIXED.to_vec()), ("short", SHORT.repeat(3))] {
        let tokens: usize = lengths.iter().sum();
        let qkv = values(tokens * 3 * h, 4);
        let mut context = vec![0f32; tokens * h];
        let flops: usize = lengths.iter().map(|l| 4 * l * l * h).sum();
        group.throughput(Throughput::Elements(flops as u64));
        let shape = format!("{set}_{tokens}tokens_{heads}x{}", h / heads);
        for (name, baseline) in [("packed", false), ("gemm_crate", true)] {
            group.bench_with_input(BenchmarkId::new(name, &shape), &(), |b, _| {
                b.iter(|| attention(&qkv, &mut context, &lengths, heads, h, baseline))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_gemm, bench_attention);
