#!/usr/bin/env bash
# The smallest container memory limit membatch-server works in, f32 and
# int8: for each limit, the image scripts/container-test.sh built runs with
# --memory=LIMIT (swap off), loads the model, and embeds 64 long texts (a
# full 256-token window each) in two requests. A limit passes when every
# request answers 200 and the container's cgroup counts no OOM kill; below
# the floor the server refuses with a typed error instead (it never gets
# killed: the OOM-kill column says so).
#
#   scripts/container-test.sh            # builds localhost/membatch-server:test
#   benches/container_floor.sh [LIMIT_MIB...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

image=localhost/membatch-server:test
podman image exists "$image" || { echo "run scripts/container-test.sh first" >&2; exit 1; }
limits=("$@")
[ ${#limits[@]} -gt 0 ] || limits=(96 112 128 160 192 256)

printf '%-10s %6s %10s %9s %14s  %s\n' precision limit loaded embedded oom_kills answer
for precision in f32 int8; do
    for mib in "${limits[@]}"; do
        cid=$(podman run -d --init --memory="${mib}m" --memory-swap="${mib}m" --network=host \
            --health-interval=disable -e MEMBATCH_HOST=127.0.0.1 -e MEMBATCH_PORT=0 -e MEMBATCH_PRECISION="$precision" "$image")
        python3 - "$cid" "$precision" "$mib" <<'PY'
import json, subprocess, sys, time, urllib.error, urllib.request

cid, precision, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])

def logs():
    return subprocess.run(["podman", "logs", cid], capture_output=True, text=True).stdout

def running():
    out = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", cid],
                         capture_output=True, text=True).stdout.strip()
    return out == "true"

def oom_kills():
    for path in ["/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"]:
        out = subprocess.run(["podman", "exec", cid, "cat", path], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("oom_kill "):
                return line.split()[1]
    return "?"

base = None
for _ in range(300):
    for line in logs().splitlines():
        if line.startswith("membatch-server listening on "):
            base = line.split()[-1]
    if base or not running():
        break
    time.sleep(0.2)

def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")

loaded, embedded, answer = "no", 0, "the server did not start"
if base:
    deadline = time.time() + 120
    while time.time() < deadline:
        status, health = call("/health")
        if health.get("model") in ("loaded", "failed"):
            break
        time.sleep(0.2)
    loaded = health.get("model")
    text = "memory limits count every page the process touches " * 40
    for r in range(2):
        status, reply = call("/v1/embeddings", {"input": [f"{r}-{i} {text}" for i in range(32)], "model": "m"})
        if status == 200:
            embedded += len(reply["data"])
            answer = "200"
        else:
            answer = f"{status} {reply.get('error', {}).get('code')}"
print(f"{precision:<10} {mib:>4}Mi {loaded:>10} {embedded:>9} {oom_kills():>14}  {answer}")
PY
        podman rm -f "$cid" >/dev/null
    done
done
