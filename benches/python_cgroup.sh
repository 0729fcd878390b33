#!/usr/bin/env bash
# The Python package against sentence-transformers, 2,000 mixed texts,
# unconstrained and inside a 300 MiB memory cgroup (root). Makes
# target/py-bench (sentence-transformers and torch from PyPI, pinned in
# benches/python_cgroup.requirements.txt; membatch from this checkout,
# a release build: `pip install ./crates/membatch-python`) the first time,
# fetches the model, then runs benches/python_cgroup.py. Benchmark on an
# idle machine: PyTorch slows down sharply when another process competes
# for the cores.
#
#     sudo benches/python_cgroup.sh [--texts N] [--limit-mib M]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=target/py-bench
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import sentence_transformers" 2>/dev/null; then
    echo "python_cgroup: installing sentence-transformers into $venv (a few GB, a few minutes)" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/python_cgroup.requirements.txt
fi
start=$SECONDS
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./crates/membatch-python
echo "python_cgroup: membatch installed from the checkout (release build) in $((SECONDS - start)) s" >&2
scripts/fetch-model.sh >/dev/null
exec "$venv/bin/python" benches/python_cgroup.py "$@"
