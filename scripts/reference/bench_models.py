#!/usr/bin/env python3
"""Random-weight checkpoints of real models' shapes, for measuring speed.

    target/compare-venv/bin/python scripts/reference/bench_models.py OUT_DIR

Speed depends on a model's shape, not its weights, so the families with no
downloadable weights here are measured on random checkpoints of a published
model's shape (each with the tokenizer of its tiny fixture in
tests/fixtures/models/, so texts become more, shorter tokens than with the
real vocabulary; tokens/s is what is compared). Writes OUT_DIR/NAME for:

- xlm-roberta-e5-small: multilingual-e5-small's shape (384 x 12, ffn 1536)
- distilbert-base: distilbert-base's shape (768 x 6, ffn 3072)
- bert-768x6: a BERT of distilbert-base's shape, to compare the two paths
- modernbert-base: ModernBERT-base's shape (768 x 22, ffn 1152, local window
  128, global attention every third layer)

Deterministic; nothing is downloaded. Used by benches/models.sh.
"""
import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import (BertConfig, BertModel, DistilBertConfig, DistilBertModel,
                          ModernBertConfig, ModernBertModel, XLMRobertaConfig, XLMRobertaModel)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures/models"
ST_FILES = ["modules.json", "1_Pooling/config.json", "tokenizer.json", "tokenizer_config.json"]


def write(out, name, fixture, model, max_seq_length):
    d = out / name
    if (d / "model.safetensors").is_file():
        print(f"{name}: already in {d}", file=sys.stderr)
        return
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(d))
    for f in ST_FILES:
        (d / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / fixture / f, d / f)
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    print(f"{name}: written to {d}", file=sys.stderr)


def main():
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    write(out, "xlm-roberta-e5-small", "tiny-xlm-roberta", XLMRobertaModel(XLMRobertaConfig(
        vocab_size=301, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=1536, max_position_embeddings=514, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)), 512)
    write(out, "distilbert-base", "tiny-distilbert", DistilBertModel(DistilBertConfig(
        vocab_size=320, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
        max_position_embeddings=512, pad_token_id=0)), 512)
    write(out, "bert-768x6", "tiny-bert-lasttoken", BertModel(BertConfig(
        vocab_size=320, hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512, pad_token_id=0)), 512)
    # Mean pooling, as the other rows (the fixture's is last-token).
    (out / "bert-768x6/1_Pooling/config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    write(out, "modernbert-base", "tiny-modernbert", ModernBertModel(ModernBertConfig(
        vocab_size=448, hidden_size=768, num_hidden_layers=22, num_attention_heads=12,
        intermediate_size=1152, max_position_embeddings=8192, local_attention=128,
        global_attn_every_n_layers=3, pad_token_id=423, bos_token_id=421, eos_token_id=422,
        cls_token_id=421, sep_token_id=422)), 512)


if __name__ == "__main__":
    main()
