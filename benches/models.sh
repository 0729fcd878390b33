#!/usr/bin/env bash
# Tokens per second of every model family membatch runs, on this machine, one
# run at a time (benchmark on an idle machine: two processes sharing the
# cores halve each other's figures).
#
#   benches/models.sh [TEXTS]        # default 300 texts of the mixed corpus
#
# Real weights where they exist here (all-MiniLM-L6-v2, all-mpnet-base-v2,
# fetched by scripts/fetch-model.sh); random-weight checkpoints of published
# models' shapes for the families without downloadable weights (made once by
# scripts/reference/bench_models.py into target/bench-models, in the venv
# benches/compare.sh makes). Each row: the release `batch_bench` example in its
# `batched` mode (BatchEmbedder, default budget), all cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
texts="${1:-300}"

scripts/fetch-model.sh >&2
scripts/fetch-model.sh all-mpnet-base-v2 >&2
venv=target/compare-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import transformers" 2>/dev/null; then
    echo "models: installing sentence-transformers into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check sentence-transformers >&2
fi
"$venv/bin/python" scripts/reference/bench_models.py target/bench-models
cargo build --release --example batch_bench >&2

home="${MEMBATCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/membatch}"
rows=(
    "bert|all-MiniLM-L6-v2 (384×6)|packed|$home/models/sentence-transformers--all-MiniLM-L6-v2"
    "mpnet|all-mpnet-base-v2 (768×12)|packed|$home/models/sentence-transformers--all-mpnet-base-v2"
    "xlm-roberta|random, multilingual-e5-small's shape (384×12)|packed|target/bench-models/xlm-roberta-e5-small"
    "bert|random, 768×6 (distilbert-base's shape)|packed|target/bench-models/bert-768x6"
    "distilbert|random, distilbert-base's shape (768×6)|candle|target/bench-models/distilbert-base"
    "modernbert|random, ModernBERT-base's shape (768×22)|candle|target/bench-models/modernbert-base"
)
echo "| model_type | model | path | texts | tokens | seconds | tokens/s | peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
    IFS='|' read -r kind name path dir <<<"$row"
    echo "models: $name" >&2
    MEMBATCH_MODEL="$dir" target/release/examples/batch_bench --texts "$texts" --modes batched --json |
        python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
kind, name, path = sys.argv[1:4]
cells = [kind, name, path, r["texts"], r["tokens"], "%.1f" % r["seconds"],
         "{:,.0f}".format(r["tokens_per_second"]), "%.0f MiB" % (r["peak_rss_bytes"] / 2**20)]
print("| " + " | ".join(str(c) for c in cells) + " |")
' "$kind" "$name" "$path"
done
