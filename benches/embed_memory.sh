#!/usr/bin/env bash
# `membatch embed`'s peak memory against the number of lines: the same short
# lines, N of them, embedded with the default model to an .npy file, for
# each N given (default 10000 and 300000). Prints each run's peak RSS and
# wall time (GNU time) and the ratio of the peaks to the first. Memory is
# flat when the ratios stay near 1: the tool reads, embeds and writes a
# window of texts at a time. Speed figures here are not comparisons; run it
# on an idle machine for them to mean anything.
#
#   benches/embed_memory.sh [N...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 300000)
scripts/fetch-model.sh >/dev/null
cargo build --quiet --workspace --bin membatch
work=target/bench-embed-memory
mkdir -p "$work"

python3 - "$work" "${sizes[@]}" <<'PY'
import random, sys
work, sizes = sys.argv[1], [int(n) for n in sys.argv[2:]]
words = ("the quick brown fox jumps over a lazy dog while memory stays flat and "
         "batches adapt to pressure in small containers").split()
for n in sizes:
    rng = random.Random(1)  # every file starts with the same lines
    with open(f"{work}/lines-{n}.txt", "w") as f:
        for i in range(n):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + f" {i}\n")
PY

first=""
printf '%10s %14s %10s %8s\n' lines peak_rss_kib seconds ratio
for n in "${sizes[@]}"; do
    /usr/bin/time -f '%M %e' -o "$work/time-$n" \
        target/debug/membatch embed --input "$work/lines-$n.txt" --output "$work/out-$n.npy"
    read -r rss secs <"$work/time-$n"
    [ -n "$first" ] || first=$rss
    printf '%10d %14d %10.1f %8.3f\n' "$n" "$rss" "$secs" "$(awk -v a="$rss" -v b="$first" 'BEGIN { print a / b }')"
    rm -f "$work/out-$n.npy"
done
