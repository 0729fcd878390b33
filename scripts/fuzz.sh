#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 120) with
# cargo-fuzz (libFuzzer, address sanitizer) on the nightly toolchain, and
# prints one line per target: executions, corpus size, findings.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# The corpus of each target is kept in fuzz/corpus/<target> (seeded from
# fuzz/seeds/<target>) and grows from run to run; a crash leaves its input
# in fuzz/artifacts/<target> and fails the script. Installs cargo-fuzz and
# the nightly toolchain when they are missing. CI runs it for a few
# seconds a target, so the targets keep building and running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-120}
shift || true
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

# One build for every target.
cargo +nightly fuzz build >/dev/null

status=0
printf '| target | seconds | executions | exec/s | corpus | findings |\n|---|---|---|---|---|---|\n'
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    log=$(mktemp)
    if cargo +nightly fuzz run "$t" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 >"$log" 2>&1; then
        findings=0
    else
        findings=$(find "fuzz/artifacts/$t" -type f | wc -l)
        status=1
        tail -40 "$log" >&2
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    files=$(find "$corpus" -type f | wc -l)
    printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$seconds" "${runs:-0}" "${rate:-0}" "$files" "$findings"
    rm -f "$log"
done
exit $status
