#!/usr/bin/env bash
# Side by side on this machine: sentence-transformers, ONNX Runtime (f32,
# and its dynamic int8 per tensor and per channel) and membatch (f32, int8)
# embed the same mixed-length corpus with the same model and thread count,
# one after the other; prints tokens/s, texts/s, peak RSS, min/mean cosine
# to sentence-transformers' vectors, and the ratios.
#
#   benches/compare.sh [TEXTS=256] [THREADS=2] [BATCH=64] [ROUNDS=1]
#
# BATCH is the Python rows' batch size (length-sorted for ONNX Runtime);
# membatch plans its own batches. ROUNDS > 1 then runs ONNX Runtime f32 and
# membatch f32 again, ROUNDS - 1 more times each, alternating which goes
# first, and prints every round's speed ratio and their median: a host whose
# speed drifts between two rows moves one ratio, not the median. Installs sentence-transformers (and
# PyTorch), onnxruntime, onnx and onnxscript from PyPI into a virtualenv at
# target/compare-venv the first time (a few GB, a few minutes); exports the
# model to ONNX with torch once, into target/compare-onnx. The model is the
# copy scripts/fetch-model.sh places, read by every row.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
texts=${1:-256}
threads=${2:-2}
batch=${3:-64}
rounds=${4:-1}

scripts/fetch-model.sh >&2
venv=target/compare-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import sentence_transformers, onnxruntime, onnx, onnxscript" 2>/dev/null; then
    echo "compare: installing sentence-transformers and onnxruntime into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check sentence-transformers onnxruntime onnx onnxscript >&2
fi
cargo build --release --quiet --example batch_bench
model_dir=${MEMBATCH_MODEL:-$(python3 - <<'PY'
import os
home = os.environ.get("MEMBATCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "membatch")
print(os.path.join(home, "models", "sentence-transformers--all-MiniLM-L6-v2"))
PY
)}
exec "$venv/bin/python" benches/compare/compare.py target/release/examples/batch_bench "$venv/bin/python" \
    "$model_dir" "$texts" "$threads" "$batch" "$rounds"
