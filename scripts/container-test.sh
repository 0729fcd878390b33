#!/usr/bin/env bash
# membatch-server's image, built and run here under a real 512 MiB limit
# (root; Debian's podman and runc, no container registry needed).
#
# 1. Installs and configures podman when it is missing.
# 2. Makes the base image from the Debian mirror once (mmdebstrap,
#    `--variant=essential`: glibc and libgcc are all the server needs);
#    `podman image exists` skips it afterwards.
# 3. Builds the server (the workspace's dev profile: the library at release
#    speed) and the image from the repository's Dockerfile with
#    FROM_HOST=1: the binary (stripped) and the fetched model come from the
#    host, the runtime stage is the one users build.
# 4. Runs it with --memory=512m and checks: /health; the image's own health
#    check; a non-root user; /memory reads the 512 MiB limit; /v1/embeddings
#    equals `membatch embed` (the library) to 1e-5; 200 long texts embedded
#    inside the limit with no OOM kill (the container cgroup's oom_kill
#    counter, which also counts a killed child); SIGTERM ends it within 5 s
#    with exit code 0.
# 5. Prints the image's size and the time each step took.
#
# `--no-build` takes target/debug/membatch-server and target/debug/membatch
# as they are (.ci/run's tests built them; it runs this beside clippy).
#
# Everything outside the repository it touches: apt packages,
# /etc/containers/containers.conf (written only when absent), the images
# localhost/membatch-base:bookworm and localhost/membatch-server:test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
step_start=$SECONDS
steps=()
step() {
    steps+=("$(printf '%-40s %4d s' "$1" $((SECONDS - step_start)))")
    step_start=$SECONDS
}
cid=""
cleanup() {
    local status=$?
    if [ -n "$cid" ]; then
        if [ $status -ne 0 ]; then
            echo "-- the container's log:"
            podman logs "$cid" 2>&1 | tail -20 || true
        fi
        podman rm -f "$cid" >/dev/null 2>&1 || true
    fi
    echo
    echo "== scripts/container-test.sh: step times"
    local s
    for s in "${steps[@]}"; do echo "  $s"; done
    printf '  %-40s %4d s%s\n' total $((SECONDS - start)) "$([ $status -eq 0 ] || echo ", FAILED")"
}
trap cleanup EXIT

fail() {
    echo "container-test: $*" >&2
    exit 1
}

build=1
case "${1:-}" in
    --no-build) build=0 ;;
    "") ;;
    *) fail "unknown argument $1 (the one option is --no-build)" ;;
esac
[ "$(id -u)" -eq 0 ] || fail "needs root (podman with a real memory cgroup)"

# 1. podman.
if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null; then
    echo "installing podman, runc and mmdebstrap from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends podman runc uidmap fuse-overlayfs \
        slirp4netns containernetworking-plugins catatonit iptables mmdebstrap >/dev/null
fi
if [ ! -f /etc/containers/containers.conf ]; then
    # crun refuses hybrid cgroups: runc. Root cannot raise rlimits here:
    # podman's default ulimits must stay at or below the hard limits.
    mkdir -p /etc/containers
    cat >/etc/containers/containers.conf <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
fi
step "podman"

# 2. The base image.
base=localhost/membatch-base:bookworm
if ! podman image exists "$base"; then
    echo "making $base from the Debian mirror"
    mmdebstrap --quiet --variant=essential \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm - \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" |
        podman import --quiet --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
fi
step "base image"

# 3. The binary, the model, the image.
scripts/fetch-model.sh >/dev/null
model_dir="${MEMBATCH_HOME:-$HOME/.cache/membatch}/models/sentence-transformers--all-MiniLM-L6-v2"
[ -f "$model_dir/model.safetensors" ] || fail "no model at $model_dir"
if [ $build -eq 1 ]; then
    cargo build --quiet --workspace --bin membatch-server --bin membatch
fi
for bin in membatch-server membatch; do
    [ -x "target/debug/$bin" ] || fail "no target/debug/$bin (build it, or drop --no-build)"
done
rm -rf target/container
mkdir -p target/container
strip -o target/container/membatch-server target/debug/membatch-server
cp -r "$model_dir" target/container/model
step "build: server binary, model"
image=localhost/membatch-server:test
podman build --quiet --network=host --format docker \
    --build-arg FROM_HOST=1 --build-arg BUILD_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" \
    -t "$image" . >/dev/null
podman image prune -f >/dev/null # the previous build's image, untagged
size=$(podman image inspect --format '{{.Size}}' "$image")
step "build: image"

# 4. Run it under 512 MiB, on the host's network (traffic stays on
# loopback), on a free port. The health check runs when asked (podman's
# timer for it needs systemd).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cid=$(podman run -d --init --memory=512m --memory-swap=512m --network=host \
    --health-interval=disable -e MEMBATCH_HOST=127.0.0.1 -e MEMBATCH_PORT="$port" "$image" \
    2> >(grep -v 'systemd connection' >&2))
base_url=""
for _ in $(seq 1 300); do
    base_url=$(podman logs "$cid" 2>/dev/null | sed -n 's/^membatch-server listening on //p' | head -1)
    [ -n "$base_url" ] && break
    [ "$(podman inspect --format '{{.State.Running}}' "$cid")" = true ] || fail "the server exited"
    sleep 0.2
done
[ -n "$base_url" ] || fail "the server printed no address"
echo "the server listens on $base_url"

python3 - "$base_url" "$cid" <<'PY'
import json, subprocess, sys, time, urllib.request

base, cid = sys.argv[1], sys.argv[2]

def call(path, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())

def check(ok, what):
    if not ok:
        sys.exit(f"container-test: {what}")
    print(f"ok: {what}")

deadline = time.time() + 120
while True:
    status, health = call("/health")
    if health.get("model") == "loaded":
        break
    check(time.time() < deadline, "the model loads within 120 s")
    time.sleep(0.2)
check(status == 200, "/health answers 200 with the model loaded")
check(subprocess.run(["podman", "healthcheck", "run", cid]).returncode == 0,
      "the image's health check (membatch-server --health-check) passes")
uid = subprocess.run(["podman", "exec", cid, "id", "-u"], capture_output=True, text=True).stdout.strip()
check(uid == "10001", f"the server runs as a non-root user ({uid})")

_, memory = call("/memory")
check(memory["cgroup_limit_bytes"] == 512 << 20,
      f"/memory reads the 512 MiB limit ({memory['cgroup_limit_bytes']})")

texts = ["A man is eating food.", "The container was killed because it ran out of memory.",
         "東京は日本の首都です。", ""]
texts[-1] = "word " * 300  # longer than the model reads
_, reply = call("/v1/embeddings", {"input": texts, "model": "m"})
served = [d["embedding"] for d in reply["data"]]
local = subprocess.run(["target/debug/membatch", "embed"], input="\n".join(texts) + "\n",
                       capture_output=True, text=True, check=True).stdout
library = [json.loads(line)["embedding"] for line in local.splitlines()]
diff = max(abs(a - b) for s, l in zip(served, library) for a, b in zip(s, l))
check(len(served) == len(library) == len(texts) and diff <= 1e-5,
      f"/v1/embeddings equals the library's vectors (max difference {diff:.1e})")

def oom_kills():
    for path in ["/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"]:
        out = subprocess.run(["podman", "exec", cid, "cat", path], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    sys.exit("container-test: no oom_kill counter in the container's cgroup")

before = oom_kills()
long_text = ("Memory limits in containers count the page cache, the heap and every thread's "
             "stack; a process that crosses the limit is killed without a word. ") * 30
words = long_text.split()
started = time.time()
embedded = 0
for r in range(10):
    batch = [" ".join(words[i % 7:]) + f" {r}-{i}" for i in range(20)]
    status, reply = call("/v1/embeddings", {"input": batch, "model": "m"}, timeout=300)
    if status == 200:
        embedded += len(reply["data"])
check(embedded == 200, f"200 long texts embedded ({embedded})")
_, memory = call("/memory")
check(oom_kills() == before,
      f"200 long texts in {time.time() - started:.0f} s, no OOM kill "
      f"(peak RSS {memory['peak_rss_bytes'] >> 20} MiB of the 512 MiB limit)")
PY

podman kill --signal TERM "$cid" >/dev/null
stopped_at=$SECONDS
code=$(timeout 10 podman wait "$cid" || echo timeout)
took=$((SECONDS - stopped_at))
[ "$code" = 0 ] || fail "after SIGTERM the server exited with $code"
[ "$took" -le 5 ] || fail "the server took ${took} s to stop after SIGTERM"
echo "ok: SIGTERM stops the server in ${took} s with exit code 0"
step "run: checks inside 512 MiB"

printf 'image %s: %d MiB\n' "$image" $((size >> 20))
