#!/usr/bin/env bash
# membatch-server under load inside a real memory cgroup (root only):
# 64 concurrent clients send 10,000 requests of 1-16 mixed texts over
# loopback; then the same texts through the library's BatchEmbedder in one
# process, for the ratio. Prints both JSON objects and the cgroup's figures.
#
#   sudo benches/server_load.sh [LIMIT_MIB] [REQUESTS] [CLIENTS]
#
# Defaults: 512 MiB, 10000 requests, 64 clients; 2 compute threads.
# Benchmark on an idle machine: nothing else should compete for the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

limit_mib=${1:-512}
requests=${2:-10000}
clients=${3:-64}
[ "$(id -u)" -eq 0 ] || { echo "server_load: needs root to make a memory cgroup" >&2; exit 1; }

scripts/fetch-model.sh >/dev/null
cargo build --release --quiet -p membatch-server --bin membatch-server --example load
bin=target/release/membatch-server
load=target/release/examples/load

# A child memory cgroup of our own (v1), or a sibling tree at the v2 root.
if [ -d /sys/fs/cgroup/memory ]; then
    own=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3)
    cg=/sys/fs/cgroup/memory$own/membatch-server-load-$$
    mkdir -p "$cg"
    echo $((limit_mib << 20)) > "$cg/memory.limit_in_bytes"
    echo $((limit_mib << 20)) > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
    peak_file=memory.max_usage_in_bytes
else
    echo +memory > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    cg=/sys/fs/cgroup/membatch-server-load-$$
    mkdir -p "$cg"
    echo $((limit_mib << 20)) > "$cg/memory.max"
    peak_file=memory.peak
fi

out=$(mktemp)
sh -c "echo \$\$ > '$cg/cgroup.procs' && exec '$bin' --port 0 --threads 2" >"$out" 2>/dev/null &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rmdir "$cg" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 200); do grep -q listening "$out" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$out")
# Wait for the startup load to finish.
for _ in $(seq 300); do curl -sf "$url/health" | grep -q '"loaded"' && break; sleep 0.1; done

echo "server: $url in a ${limit_mib} MiB cgroup ($cg)"
"$load" --url "$url" --clients "$clients" --requests "$requests" --pid "$server"
echo "cgroup peak: $(( $(cat "$cg/$peak_file") >> 20 )) MiB of $limit_mib MiB"
grep -h oom_kill "$cg/memory.oom_control" "$cg/memory.events" 2>/dev/null || true
curl -s "$url/metrics" | grep -E '^membatch_(batches_total|request_refusals_total|requests_total|panics_total)' || true

kill -TERM "$server"
wait "$server" && echo "server exit: 0"
echo "library reference (same texts, one process, no cgroup):"
RAYON_NUM_THREADS=2 "$load" --reference --requests "$requests"
