#!/usr/bin/env bash
# membatch-server through the real client libraries (openai,
# huggingface_hub, ollama, langchain-ollama, cohere; pinned in
# scripts/clients/requirements.txt, in a venv under target/): each one's
# vectors or scores against a reference made without the server
# (`membatch embed`, the reranker fixture's logits), at most 1e-5 apart;
# and the server's /openapi.json through openapi-spec-validator.
# Fetches the model, builds the binaries unless --no-build, starts the
# server on a free loopback port, runs scripts/clients/test_clients.py.
# `--setup` only makes the venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
build=1
setup_only=0
case "${1:-}" in
    --no-build) build=0 ;;
    # Only the venv: CI makes it while the workspace builds.
    --setup) setup_only=1 ;;
    "") ;;
    *) echo "client-test: unknown argument $1 (the options are --no-build and --setup)" >&2; exit 1 ;;
esac

venv=target/py-clients
if [ ! -x "$venv/bin/python" ] || ! cmp -s scripts/clients/requirements.txt "$venv/requirements.txt"; then
    echo "setting up $venv (the client libraries)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # pip's download cache outside target/, so a clean clone on the same
    # machine does not fetch the wheels again.
    PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}" "$venv/bin/pip" install --quiet \
        --disable-pip-version-check --retries 5 --timeout 60 -r scripts/clients/requirements.txt
    cp scripts/clients/requirements.txt "$venv/requirements.txt"
fi
if [ $setup_only -eq 1 ]; then
    echo "client-test: $venv ready in $((SECONDS - start)) s"
    exit 0
fi
scripts/fetch-model.sh >/dev/null
if [ $build -eq 1 ]; then
    cargo build --quiet --workspace --bin membatch-server --bin membatch
fi
for bin in membatch-server membatch; do
    [ -x "target/debug/$bin" ] || { echo "client-test: no target/debug/$bin (build it, or drop --no-build)" >&2; exit 1; }
done
# The server's settings are its flags here, not whatever the environment
# holds (an API key would make every request a 401).
while IFS='=' read -r name _; do
    case "$name" in MEMBATCH_HOME) ;; MEMBATCH_*|EMBEDDING_*) unset "$name" ;; esac
done < <(env)

served=all-MiniLM-L6-v2
reranker=tests/fixtures/models/tiny-bert-reranker
# Port 0: the server picks a free port and prints its address.
log=target/client-test-server.log
target/debug/membatch-server --port 0 --served-model-name "$served" \
    --reranker "$reranker" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
url=""
loaded=0
for _ in $(seq 1 600); do
    [ -n "$url" ] || url=$(sed -n 's/^membatch-server listening on //p' "$log" | head -1)
    if [ -n "$url" ] && python3 -c "import json, sys, urllib.request; sys.exit(json.load(urllib.request.urlopen('$url/health'))['model'] != 'loaded')" 2>/dev/null; then
        loaded=1
        break
    fi
    kill -0 $server 2>/dev/null || break
    sleep 0.2
done
if [ $loaded -eq 0 ]; then
    cat "$log"
    echo "client-test: the server did not come up with its model loaded within 120 s" >&2
    exit 1
fi

MEMBATCH_URL=$url MEMBATCH_SERVED=$served MEMBATCH_RERANKER_FIXTURE=$reranker \
    "$venv/bin/python" scripts/clients/test_clients.py
echo "client-test: $((SECONDS - start)) s"
