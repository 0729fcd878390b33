#!/usr/bin/env bash
# A Ballista cluster on loopback embeds a parquet corpus (root only):
# membatch-scheduler and two membatch-executors, each in its own memory
# cgroup, run `COPY (SELECT id, embed(text) ...) TO 'dir/' STORED AS
# PARQUET`; then the same statement on a single node (membatch-sql, in a
# cgroup of the same size); then both outputs are compared row by row.
# Prints wall times, tokens/s, each cgroup's peak and OOM kills.
#
#   sudo benches/cluster.sh [TEXTS] [LIMIT_MIB]
#
# Defaults: 20000 texts, 512 MiB per process. Each executor runs one task
# at a time with one compute thread (two executors on two cores); the
# single node runs one partition with two threads. Benchmark on an idle
# machine: nothing else should compete for the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

texts=${1:-20000}
limit_mib=${2:-512}
[ "$(id -u)" -eq 0 ] || { echo "cluster: needs root to make memory cgroups" >&2; exit 1; }

scripts/fetch-model.sh >/dev/null
# PROFILE=dev reuses the test build (DataFusion unoptimised, the model's
# path optimised: Cargo.toml) for a quick check; it selects the workspace,
# as scripts/test.sh does, so that no dependency is built again.
profile=${PROFILE:-release}
if [ "$profile" = dev ]; then
    cargo build --quiet --workspace --bins
    bin=target/debug
else
    cargo build --profile "$profile" --quiet -p membatch-datafusion --bins
    bin=target/$profile
fi
work=$(mktemp -d)
pids=()
cgroups=()

cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for cg in "${cgroups[@]}"; do rmdir "$cg" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# A memory cgroup of LIMIT_MIB (v1 child of ours, or v2 at the root).
make_cgroup() {
    local name=$1 cg
    if [ -d /sys/fs/cgroup/memory ]; then
        local own
        own=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3)
        cg=/sys/fs/cgroup/memory$own/membatch-cluster-$name-$$
        mkdir -p "$cg"
        echo $((limit_mib << 20)) > "$cg/memory.limit_in_bytes"
        echo $((limit_mib << 20)) > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
    else
        echo +memory > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
        cg=/sys/fs/cgroup/membatch-cluster-$name-$$
        mkdir -p "$cg"
        echo $((limit_mib << 20)) > "$cg/memory.max"
    fi
    cgroups+=("$cg")
    echo "$cg"
}

peak_mib() {
    local cg=$1
    if [ -f "$cg/memory.max_usage_in_bytes" ]; then
        echo $(( $(cat "$cg/memory.max_usage_in_bytes") >> 20 ))
    else
        echo $(( $(cat "$cg/memory.peak") >> 20 ))
    fi
}

oom_kills() {
    local cg=$1
    grep -h '^oom_kill ' "$cg/memory.oom_control" "$cg/memory.events" 2>/dev/null | awk '{s+=$2} END {print s+0}'
}

# Runs a command inside a cgroup. It execs, so a backgrounded call's $! is
# the command's own pid (signals reach it, not a wrapper shell).
in_cgroup() {
    local cg=$1
    shift
    exec sh -c "echo \$\$ > '$cg/cgroup.procs' && exec \"\$@\"" sh "$@"
}

echo "== corpus: $texts texts in 8 parquet files"
# Several files, so the scan has a partition per file for the executors to
# share (one small file would be one task on one executor).
files=8
for k in $(seq 0 $((files - 1))); do
    from=$((k * texts / files + 1))
    to=$(((k + 1) * texts / files))
    "$bin/membatch-sql" -e "COPY (
  SELECT value AS id,
         concat_ws(' ',
           (make_array('The', 'A', 'Every', 'No', 'Some', 'This'))[value % 6 + 1],
           (make_array('quick', 'lazy', 'careful', 'distributed', 'embedded', 'memory-bound', 'small'))[(value / 6) % 7 + 1],
           (make_array('server', 'container', 'model', 'query', 'executor', 'scheduler', 'laptop', 'index'))[(value / 42) % 8 + 1],
           (make_array('runs', 'fails', 'embeds', 'waits', 'grows', 'shrinks', 'reads', 'writes'))[(value / 336) % 8 + 1],
           repeat('within its memory limit, and then some more words about it, ', CAST(value % 17 AS INT)),
           'document number', CAST(value AS VARCHAR)) AS text
  FROM generate_series($from, $to)
) TO '$work/corpus/part-$k.parquet' STORED AS PARQUET" >/dev/null
done

# Stops a process with SIGTERM; SIGKILL after 30 s (reported).
stop() {
    local pid=$1 name=$2
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "$name did not stop within 30 s of SIGTERM: killed" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

copy_sql="COPY (SELECT id, embed(text) AS v FROM docs) TO '%s' STORED AS PARQUET"

echo "== cluster: scheduler + 2 executors, ${limit_mib} MiB each"
cg_s=$(make_cgroup scheduler)
RUST_LOG=warn in_cgroup "$cg_s" "$bin/membatch-scheduler" --port 50150 2>"$work/scheduler.log" &
pids+=($!)
sleep 1
cg_e=()
for i in 1 2; do
    cg=$(make_cgroup "executor$i")
    cg_e+=("$cg")
    RUST_LOG=warn in_cgroup "$cg" "$bin/membatch-executor" --scheduler 127.0.0.1:50150 \
        --port $((50150 + 2 * i)) --grpc-port $((50151 + 2 * i)) --threads 1 --task-slots 1 \
        --work-dir "$work" --stats 2>"$work/executor$i.log" &
    pids+=($!)
done
sleep 3
start=$(date +%s.%N)
"$bin/membatch-sql" --ballista df://127.0.0.1:50150 --partitions 2 --table docs="$work/corpus/" \
    -e "$(printf "$copy_sql" "$work/cluster/")"
cluster_s=$(echo "$(date +%s.%N) - $start" | bc)
# Executors print their figures on shutdown.
stop "${pids[1]}" executor1
stop "${pids[2]}" executor2
cluster_tokens=0
for i in 1 2; do
    line=$(grep '^{"texts"' "$work/executor$i.log" || true)
    if [ -z "$line" ]; then
        echo "executor$i printed no figures; its log ends:" >&2
        tail -n 20 "$work/executor$i.log" >&2
    fi
    echo "executor$i: $line"
    tokens=$(echo "$line" | sed -n 's/.*"tokens":\([0-9]*\).*/\1/p')
    cluster_tokens=$((cluster_tokens + ${tokens:-0}))
    echo "executor$i cgroup: peak $(peak_mib "${cg_e[$((i - 1))]}") MiB of $limit_mib MiB, oom kills $(oom_kills "${cg_e[$((i - 1))]}")"
done
echo "scheduler cgroup: peak $(peak_mib "$cg_s") MiB, oom kills $(oom_kills "$cg_s")"
stop "${pids[0]}" scheduler
pids=()

echo "== single node: membatch-sql, ${limit_mib} MiB, 1 partition x 2 threads"
cg_n=$(make_cgroup single)
start=$(date +%s.%N)
(in_cgroup "$cg_n" "$bin/membatch-sql" --threads 2 --partitions 1 --table docs="$work/corpus/" --stats \
    -e "$(printf "$copy_sql" "$work/single/")")
single_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "single cgroup: peak $(peak_mib "$cg_n") MiB of $limit_mib MiB, oom kills $(oom_kills "$cg_n")"

echo "== comparison"
"$bin/membatch-sql" --table s="$work/single/" --table c="$work/cluster/" -e "
  SELECT count(*) AS rows, max(array_distance(s.v, c.v)) AS max_distance
  FROM s JOIN c ON s.id = c.id"
printf 'cluster: %.1f s, %.0f tokens/s (%d tokens)\n' "$cluster_s" "$(echo "$cluster_tokens / $cluster_s" | bc -l)" "$cluster_tokens"
printf 'single node: %.1f s, %.0f tokens/s\n' "$single_s" "$(echo "$cluster_tokens / $single_s" | bc -l)"
