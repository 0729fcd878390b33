#!/usr/bin/env bash
# The main job on a fresh machine: fetch the model (idempotent), then run
# `membatch embed` on examples/data/sample.txt. Extra arguments go to it
# (e.g. --threads 2). Output: target/sample-embeddings.jsonl, plus a short
# report of each text's nearest neighbour to show the vectors mean something.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-model.sh
input=examples/data/sample.txt
output=target/sample-embeddings.jsonl
# `--workspace`: the same features, so the same build, as scripts/test.sh.
if [ ! -x target/debug/membatch ]; then
    echo "building membatch (about 3 minutes the first time on 2 cores)"
fi
cargo build --quiet --workspace --bin membatch
start=$(date +%s%N)
target/debug/membatch embed "$@" --input "$input" --output "$output"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "embedded $(wc -l <"$output") texts from $input in ${ms} ms (model load included) -> $output"

python3 - "$input" "$output" <<'PY'
import json, sys
texts = open(sys.argv[1], encoding="utf-8").read().split("\n")[:-1]
vecs = [json.loads(l)["embedding"] for l in open(sys.argv[2])]
print(f"dimension {len(vecs[0])}; nearest neighbour of the first five texts (cosine):")
for i in range(min(5, len(vecs))):
    best = max((j for j in range(len(vecs)) if j != i),
               key=lambda j: sum(a * b for a, b in zip(vecs[i], vecs[j])))
    cos = sum(a * b for a, b in zip(vecs[i], vecs[best]))
    print(f"  {cos:.3f}  {texts[i][:50]!r} ~ {texts[best][:50]!r}")
PY
