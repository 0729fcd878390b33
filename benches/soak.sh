#!/usr/bin/env bash
# Long runs that look for growth: 100,000 texts through BatchEmbedder and
# through EmbedService with 8 concurrent callers, with and without the
# periodic malloc_trim, RSS sampled as they go (examples/soak.rs). One JSON
# object per run. Benchmark on an idle machine.
#
#   benches/soak.sh [TEXTS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

texts=${1:-100000}
scripts/fetch-model.sh >/dev/null
cargo build --release --quiet --example soak
for mode in batcher service; do
    for trim in "" --no-trim; do
        RAYON_NUM_THREADS=2 target/release/examples/soak --texts "$texts" --mode "$mode" $trim
    done
done
