#!/usr/bin/env python3
"""The Python services' scenario: 2,000 mixed texts in a 300 MiB cgroup.

Runs (root, a real memory cgroup v1 or v2 with swap off, via
benches/floors.py's Cgroup):

1. sentence-transformers, unconstrained: its vectors (the reference),
   wall time, peak RSS;
2. membatch, unconstrained: the same;
3. membatch inside the 300 MiB cgroup: completes? max difference to
   sentence-transformers' vectors (goal <= 1e-5), OOM kills;
4. sentence-transformers inside the same 300 MiB cgroup: its outcome
   (expected: OOM-killed).

Both use the same model directory (all-MiniLM-L6-v2), 2 threads, and
encode the texts in one call with their defaults (sentence-transformers:
batch_size 32; membatch: batches sized to the budget). Prints a line per
run and a Markdown table (docs/python.md "In 300 MiB"). Run through
benches/python_cgroup.sh, which makes the venv.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
from floors import Cgroup, model_dir  # noqa: E402

MIB = 1 << 20


def mixed_texts(n: int) -> list[str]:
    """n texts of mixed length from the repository's own prose and code:
    a third short (a line), a third paragraphs, a third long (several
    paragraphs, past the model's 256 tokens). Deterministic."""
    chunks: list[str] = []
    for pattern in ("docs/*.md", "src/**/*.rs", "README.md", "CHANGELOG.md"):
        for path in sorted(ROOT.glob(pattern)):
            text = path.read_text(errors="replace")
            chunks.extend(p.strip() for p in text.split("\n\n") if len(p.strip()) > 20)
    rng = random.Random(2000)
    texts = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            texts.append(rng.choice(chunks).splitlines()[0][:200])
        elif kind == 1:
            texts.append(rng.choice(chunks)[:1500])
        else:
            texts.append("\n\n".join(rng.choice(chunks) for _ in range(6))[:8000])
    rng.shuffle(texts)
    return texts


WORKER = r"""
import json, resource, sys, time
import numpy as np
which, model, texts_path, out_path = sys.argv[1:5]
texts = json.load(open(texts_path))
start = time.perf_counter()
if which == "membatch":
    import membatch
    m = membatch.Embedder(model, threads=2)
    loaded = time.perf_counter()
    v = m.encode(texts)
else:
    import torch
    torch.set_num_threads(2)
    from sentence_transformers import SentenceTransformer
    m = SentenceTransformer(model, device="cpu")
    loaded = time.perf_counter()
    v = m.encode(texts, convert_to_numpy=True)
done = time.perf_counter()
np.save(out_path, v.astype(np.float32))
print(json.dumps({
    "load_s": loaded - start, "encode_s": done - loaded,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def run(which: str, model: str, texts_path: str, out: str, limit_mib: int | None) -> dict:
    argv = [sys.executable, "-c", WORKER, which, model, texts_path, out]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="2", RUST_LOG="warn")
    cg = Cgroup(limit_mib) if limit_mib else None
    t = time.perf_counter()
    try:
        if cg:
            p = cg.spawn(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        else:
            p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = p.communicate(timeout=3600)
        wall = time.perf_counter() - t
        result = {"which": which, "limit_mib": limit_mib, "exit": p.returncode, "wall_s": wall}
        if cg:
            result["oom_kills"] = cg.oom_kills()
        if p.returncode == 0:
            result.update(json.loads(stdout.strip().splitlines()[-1]))
        else:
            tail = [l for l in stderr.splitlines() if l.strip()]
            result["error"] = tail[-1][:200] if tail else f"exit {p.returncode}"
        return result
    finally:
        if cg:
            cg.remove()


def main() -> None:
    # Pieces for paired timing (farm-bench): `texts N FILE` writes the
    # texts; `worker WHICH MODEL FILE OUT` is one run, unconstrained.
    if len(sys.argv) > 1 and sys.argv[1] == "texts":
        pathlib.Path(sys.argv[3]).write_text(json.dumps(mixed_texts(int(sys.argv[2]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        os.execv(sys.executable, [sys.executable, "-c", WORKER, *sys.argv[2:6]])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--limit-mib", type=int, default=300)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("python_cgroup: needs root (it makes a memory cgroup)")
    import numpy as np

    model = str(model_dir("all-MiniLM-L6-v2"))
    work = pathlib.Path(tempfile.mkdtemp(prefix="membatch-pycg-"))
    texts = mixed_texts(args.texts)
    texts_path = work / "texts.json"
    texts_path.write_text(json.dumps(texts))
    lengths = sorted(len(t) for t in texts)
    print(f"{len(texts)} texts, {sum(lengths)} characters, median {lengths[len(lengths) // 2]}, "
          f"max {lengths[-1]}", flush=True)

    runs = [
        ("sentence-transformers", None),
        ("membatch", None),
        ("membatch", args.limit_mib),
        ("sentence-transformers", args.limit_mib),
    ]
    results = []
    reference = None
    for which, limit in runs:
        out = work / f"{which}-{limit or 'free'}.npy"
        r = run(which, model, str(texts_path), str(out), limit)
        if r["exit"] == 0:
            v = np.load(out)
            if which == "sentence-transformers" and limit is None:
                reference = v
            if reference is not None:
                r["max_abs_diff"] = float(np.abs(v - reference).max())
            r["texts_per_s"] = len(texts) / r["encode_s"]
        print(json.dumps(r), flush=True)
        results.append(r)

    print()
    print(f"| run | limit | outcome | encode | texts/s | peak RSS | max diff to sentence-transformers |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        limit = f"{r['limit_mib']} MiB" if r["limit_mib"] else "none"
        if r["exit"] == 0:
            outcome = "completed" + (f", {r['oom_kills']} OOM kills" if "oom_kills" in r else "")
            print(f"| {r['which']} | {limit} | {outcome} | {r['encode_s']:.1f} s | "
                  f"{r['texts_per_s']:.1f} | {r['peak_rss_kib'] / 1024:.0f} MiB | "
                  f"{r.get('max_abs_diff', 0):.1e} |")
        else:
            killed = r.get("oom_kills", 0)
            outcome = f"OOM-killed ({killed} kills, exit {r['exit']})" if killed else f"failed: {r['error']}"
            print(f"| {r['which']} | {limit} | {outcome} | – | – | – | – |")


if __name__ == "__main__":
    main()
