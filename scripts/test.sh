#!/usr/bin/env bash
# The whole membatch test suite, on a fresh machine or an old one. Fetches
# the real model weights (idempotent) while the workspace builds, then runs
# every test of the workspace once: the integration tests, offline ones and
# those that need the real weights (#[ignore]d in a plain `cargo test`, run
# here by --include-ignored; without the weights they fail, never skip) and,
# as root, those that need root (their paths hold `as_root::`; anyone else
# is told they were not run); the doctests; and the unit tests, with the
# library's debug assertions and overflow checks on (the dev profile builds
# it without them, at release speed: Cargo.toml). Prints each phase's time
# and the total at the end (docs/testing.md has a fresh clone's figures and
# the budget).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
phase_start=$SECONDS
phases=()
# Ends the running phase, named $1.
phase() {
    phases+=("$(printf '%-44s %4d s' "$1" $((SECONDS - phase_start)))")
    phase_start=$SECONDS
}
report() {
    local status=$?
    echo
    echo "== scripts/test.sh: phase times"
    local p
    for p in "${phases[@]}"; do echo "  $p"; done
    printf '  %-44s %4d s (%d min %02d s)%s\n' total $((SECONDS - start)) \
        $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) \
        "$([ "$status" -eq 0 ] || echo ", FAILED")"
}
trap report EXIT

logs=target/test-logs
mkdir -p "$logs"

# Every model the tests read, fetched in the background while cargo
# builds: all-MiniLM-L6-v2 (the default model); all-mpnet-base-v2 (438 MB)
# for the MPNet parity tests; two MiniLM fine-tunes whose files are the
# real cases of a missing pooling config and of a prompts block.
(
    for model in all-MiniLM-L6-v2 all-mpnet-base-v2 rohan-pristine sre-embedding-model; do
        scripts/fetch-model.sh "$model"
    done
) >"$logs/fetch-model.log" 2>&1 &
fetch=$!

# One build of every integration test and binary of the workspace, and of
# the examples the tests run (the other examples are compiled by clippy in CI). Every
# cargo command here selects the whole workspace: dependencies are then
# built once, with one set of features (a command that selected the root
# package alone would resolve other features and rebuild most of them).
if [ ! -d target/debug/deps ]; then
    echo "building the workspace's tests (about 9 minutes the first time on 2 cores)"
fi
cargo test --workspace --test '*' --no-run
cargo build --workspace --example embed --example memory_report --example service_load --example load_report
phase "build: integration tests, binaries, examples"

if ! wait "$fetch"; then
    cat "$logs/fetch-model.log" >&2
    echo "scripts/test.sh: could not fetch the model weights the tests need (above)" >&2
    exit 1
fi
phase "model weights (waited for, beyond the build)"

# The as_root:: tests (real memory cgroups: tests/real_limits.rs; a full
# disk: the CLI's faults) mostly wait: on child processes loading a model,
# on a cgroup taking a lower limit, on a neighbour holding memory. As root
# they run beside the other integration tests (their figures are memory,
# which another process's CPU use does not move), in a log printed after.
root_tests=
root_skip=()
if [ "$(id -u)" -eq 0 ]; then
    cargo test --workspace --test real_limits --test it -- --include-ignored as_root:: \
        >"$logs/as_root.log" 2>&1 &
    root_tests=$!
else
    root_skip=(--skip as_root::)
    echo "NOT RUN: the as_root:: tests (real memory cgroups: tests/real_limits.rs; a full disk: the CLI's faults) need root (you are uid $(id -u)); CI runs them as root." >&2
fi
cargo test --workspace --test '*' -- --include-ignored --skip as_root::
if [ -n "$root_tests" ]; then
    root_ok=0
    wait "$root_tests" || root_ok=$?
    echo "== the as_root:: tests, run beside the others:"
    cat "$logs/as_root.log"
    if [ "$root_ok" -ne 0 ]; then
        echo "scripts/test.sh: the as_root:: tests failed (above)" >&2
        exit 1
    fi
fi
if [ -n "$root_tests" ]; then
    phase "tests: integration (as_root:: beside)"
else
    phase "tests: integration (no root)"
fi

cargo test --workspace --doc
phase "tests: doctests (README included)"

# The unit tests of every crate (every kernel against its reference, the
# fuzz targets' bodies) and of the one binary that has them (`--bin
# membatch`, the CLI: its index cache and codec; `--bins` would also build
# empty harnesses for the binaries that set `test = false`) run with the
# library built as a plain debug build: debug assertions and overflow
# checks on, unoptimised. The dev profile builds it without them, at
# release speed, for everything else (they made its kernels 1.6x slower;
# Cargo.toml); the unit tests' inputs are small, and unoptimised the
# library compiles in half the time (this phase took 45 s, against 92 s
# at opt-level 3 with the checks).
cargo test --workspace --lib --bin membatch \
    --config 'profile.dev.package.membatch.opt-level=0' \
    --config 'profile.dev.package.membatch.debug-assertions=true' \
    --config 'profile.dev.package.membatch.overflow-checks=true' \
    -- --include-ignored "${root_skip[@]}"
phase "tests: units, debug build of the library"
