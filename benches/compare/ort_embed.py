"""ONNX Runtime beside membatch: the same model files exported to ONNX with
torch, run with onnxruntime's CPU provider. Run by benches/compare/compare.py.

  ort_embed.py prepare MODEL_DIR CACHE_DIR
      Exports MODEL_DIR's transformer to CACHE_DIR/model.onnx (f32) and
      quantises it with onnxruntime's dynamic quantisation, per tensor
      (model.int8.onnx) and per output channel (model.int8-channel.onnx).
      Skipped for files already there.

  ort_embed.py run MODEL_DIR CACHE_DIR VARIANT CORPUS THREADS BATCH OUT.npy
      Embeds CORPUS (one text per line) with VARIANT (f32, int8,
      int8-channel): length-sorted batches, mean pooling over the attention
      mask and L2 normalisation, as the model's sentence-transformers
      modules say (checked). Times tokenisation and inference, not the
      session's creation; writes the vectors in input order to OUT.npy and
      prints one JSON object.
"""
import json
import os
import sys
import time

import numpy as np

VARIANTS = {"f32": "model.onnx", "int8": "model.int8.onnx", "int8-channel": "model.int8-channel.onnx"}


def prepare(model_dir, cache):
    os.makedirs(cache, exist_ok=True)
    f32 = os.path.join(cache, VARIANTS["f32"])
    if not os.path.exists(f32):
        import torch
        from transformers import AutoModel

        class Encoder(torch.nn.Module):
            """The transformer's last hidden state from keyword inputs."""

            def __init__(self):
                super().__init__()
                self.inner = AutoModel.from_pretrained(model_dir).eval()

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.inner(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        model = Encoder().eval()
        ids = torch.ones((2, 16), dtype=torch.long)
        inputs = (ids, torch.ones_like(ids), torch.zeros_like(ids))
        axes = {0: "batch", 1: "sequence"}
        tmp = f32 + ".tmp"
        with torch.no_grad():
            torch.onnx.export(
                model,
                inputs,
                tmp,
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["last_hidden_state"],
                dynamic_axes={
                    "input_ids": axes,
                    "attention_mask": axes,
                    "token_type_ids": axes,
                    "last_hidden_state": axes,
                },
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, f32)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for variant, per_channel in (("int8", False), ("int8-channel", True)):
        out = os.path.join(cache, VARIANTS[variant])
        if not os.path.exists(out):
            tmp = out + ".tmp.onnx"
            quantize_dynamic(f32, tmp, weight_type=QuantType.QInt8, per_channel=per_channel)
            os.replace(tmp, out)


def check_modules(model_dir):
    """Mean pooling and Normalize, as this script computes them."""
    with open(os.path.join(model_dir, "modules.json")) as f:
        kinds = [m["type"] for m in json.load(f)]
    assert any(k.endswith("Normalize") for k in kinds), kinds
    with open(os.path.join(model_dir, "1_Pooling", "config.json")) as f:
        pooling = json.load(f)
    assert pooling.get("pooling_mode_mean_tokens"), pooling
    with open(os.path.join(model_dir, "sentence_bert_config.json")) as f:
        return json.load(f)["max_seq_length"]


def run(model_dir, cache, variant, corpus, threads, batch_size, out):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    max_len = check_modules(model_dir)
    texts = open(corpus, encoding="utf-8").read().split("\n")[:-1]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        os.path.join(cache, VARIANTS[variant]), options, providers=["CPUExecutionProvider"]
    )

    def embed(batch):
        enc = tokenizer(batch, padding=True, truncation=True, max_length=max_len, return_tensors="np")
        feed = {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
            "token_type_ids": enc["token_type_ids"].astype(np.int64),
        }
        hidden = session.run(None, feed)[0]
        mask = feed["attention_mask"][:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    embed(texts[:8])  # warm-up, as for the other rows
    start = time.perf_counter()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    parts = []
    for at in range(0, len(order), batch_size):
        index = order[at : at + batch_size]
        parts.append((index, embed([texts[i] for i in index])))
    seconds = time.perf_counter() - start
    dim = parts[0][1].shape[1]
    vectors = np.zeros((len(texts), dim), dtype=np.float32)
    for index, v in parts:
        vectors[index] = v
    np.save(out, vectors)
    print(json.dumps({
        "texts": len(texts),
        "tokens": int(sum(lengths)),
        "seconds": seconds,
        "dimension": dim,
        "onnxruntime": ort.__version__,
        "threads": threads,
        "batch_size": batch_size,
        "variant": variant,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        m, c, v, corpus, threads, batch, out = sys.argv[2:9]
        run(m, c, v, corpus, int(threads), int(batch), out)
    else:
        sys.exit(__doc__)
