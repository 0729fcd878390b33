#!/usr/bin/env bash
# The main job on a fresh machine: fetch the model (idempotent), index a real
# source tree with `membatch codebase` within the default memory budget, and
# search it.
#
#   scripts/index-codebase.sh [DIR] [QUERY]
#
# DIR defaults to this repository's src/, QUERY to a question about it. The
# index (and its cache, so a second run reuses every chunk) goes to
# $MEMBATCH_INDEX, default target/codebase-index. Extra settings come from
# the MEMBATCH_* variables (docs/configuration.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=${1:-src}
query=${2:-"how is the memory budget computed inside a container"}
out=${MEMBATCH_INDEX:-target/codebase-index}

scripts/fetch-model.sh
# The dev profile builds membatch and the crates on the model's hot path
# optimised (Cargo.toml; it indexes src/ 1.10x slower than a release build,
# docs/testing.md), so this shares the test build instead of compiling a
# release one. `--workspace` resolves the same features as scripts/test.sh.
if [ ! -x target/debug/membatch ]; then
    echo "building membatch (about 3 minutes the first time on 2 cores)"
fi
cargo build --quiet --workspace --bin membatch
bin=target/debug/membatch
"$bin" codebase index "$dir" --out "$out"
echo
echo "query: $query"
"$bin" codebase query "$out" "$query" -k 5
