#!/usr/bin/env bash
# The Python package's tests (crates/membatch-python): makes a venv under
# target/py-membatch from crates/membatch-python/requirements-test.txt
# (pinned), builds the package into it with `maturin develop` (the
# workspace's dev profile: the library optimised, as for the Rust tests),
# fetches the default model, then runs pytest over the package's tests and
# the FastAPI example's, and mypy over the package and its stubs. As root
# it also runs a process in a real 300 MiB memory cgroup. Prints each
# phase's time. `--setup` only makes the venv (CI makes it while the
# workspace builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
phase_start=$SECONDS
phases=()
phase() {
    phases+=("$(printf '%-36s %4d s' "$1" $((SECONDS - phase_start)))")
    phase_start=$SECONDS
}
report() {
    local status=$?
    echo
    echo "== scripts/python-test.sh: phase times"
    local p
    for p in "${phases[@]}"; do echo "  $p"; done
    printf '  %-36s %4d s%s\n' total $((SECONDS - start)) "$([ "$status" -eq 0 ] || echo ", FAILED")"
}
trap report EXIT

setup_only=0
case "${1:-}" in
    --setup) setup_only=1 ;;
    "") ;;
    *) echo "python-test: unknown argument $1 (the option is --setup)" >&2; exit 1 ;;
esac

venv=target/py-membatch
req=crates/membatch-python/requirements-test.txt
stamp="$venv/requirements.stamp"
wanted=$(cat "$req" examples/python/requirements.txt)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "setting up $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # pip's download cache outside target/: a clean clone on the same
    # machine does not fetch the wheels again.
    PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}" "$venv/bin/pip" install --quiet \
        --disable-pip-version-check --retries 5 --timeout 60 -r "$req"
    printf '%s' "$wanted" >"$stamp"
fi
phase "venv"
if [ $setup_only -eq 1 ]; then
    exit 0
fi

scripts/fetch-model.sh >/dev/null
phase "model weights"

# maturin installs into the venv it finds in VIRTUAL_ENV.
(
    cd crates/membatch-python
    VIRTUAL_ENV="$PWD/../../$venv" PATH="$PWD/../../$venv/bin:$PATH" maturin develop --quiet
)
phase "build (maturin develop)"

# From the repository's root: the example is imported as examples.python.app.
"$venv/bin/python" -m pytest -q -p no:cacheprovider crates/membatch-python/tests examples/python
phase "pytest"

(cd crates/membatch-python && "../../$venv/bin/mypy" --no-incremental python/membatch tests/typed_usage.py)
phase "mypy: package, stubs"
