"""Embed a file of texts (one per line) with sentence-transformers, timing
only `encode`, save the vectors (OUT.npy) and print one JSON object. Run by
benches/compare/compare.py:

  st_embed.py MODEL_DIR CORPUS THREADS BATCH OUT.npy
"""
import json
import sys
import time

model_dir, corpus, threads, batch_size, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

import torch  # noqa: E402

torch.set_num_threads(threads)
from sentence_transformers import SentenceTransformer  # noqa: E402

texts = open(corpus, encoding="utf-8").read().split("\n")[:-1]
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:8], batch_size=8)  # warm-up, as membatch's model load warms its pages
start = time.perf_counter()
vectors = model.encode(texts, batch_size=batch_size)
seconds = time.perf_counter() - start
import numpy as np  # noqa: E402

np.save(out, np.asarray(vectors, dtype=np.float32))
print(json.dumps({
    "texts": len(texts),
    "seconds": seconds,
    "dimension": int(vectors.shape[1]),
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "batch_size": batch_size,
}))
