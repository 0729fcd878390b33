#!/usr/bin/env bash
# Side by side on this machine: membatch and sentence-transformers embed the
# same mixed-length corpus with the same model and thread count, one after
# the other; prints tokens/s, texts/s, peak RSS and the ratios.
#
#   benches/compare.sh [TEXTS=256] [THREADS=2] [ST_BATCH=64]
#
# Installs sentence-transformers (and PyTorch) from PyPI into a virtualenv
# at target/compare-venv the first time (a few GB, a few minutes); the model
# is the copy scripts/fetch-model.sh places, read by both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
texts=${1:-256}
threads=${2:-2}
st_batch=${3:-64}

scripts/fetch-model.sh >&2
venv=target/compare-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import sentence_transformers" 2>/dev/null; then
    echo "compare: installing sentence-transformers into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check sentence-transformers >&2
fi
cargo build --release --quiet --example batch_bench
model_dir=${MEMBATCH_MODEL:-$(python3 - <<'PY'
import os
home = os.environ.get("MEMBATCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "membatch")
print(os.path.join(home, "models", "sentence-transformers--all-MiniLM-L6-v2"))
PY
)}
exec python3 benches/compare/compare.py target/release/examples/batch_bench "$venv/bin/python" \
    "$model_dir" "$texts" "$threads" "$st_batch"
