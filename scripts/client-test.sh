#!/usr/bin/env bash
# membatch-server through the real client libraries (openai,
# huggingface_hub, ollama, langchain-ollama, cohere; pinned in
# scripts/clients/requirements.txt, in a venv under target/): each one's
# vectors or scores against a reference made without the server
# (`membatch embed`, the reranker fixture's logits), at most 1e-5 apart.
# Fetches the model, builds the binaries unless --no-build, starts the
# server on a free loopback port, runs scripts/clients/test_clients.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
build=1
case "${1:-}" in
    --no-build) build=0 ;;
    "") ;;
    *) echo "client-test: unknown argument $1 (the one option is --no-build)" >&2; exit 1 ;;
esac

venv=target/py-clients
if [ ! -x "$venv/bin/python" ] || ! cmp -s scripts/clients/requirements.txt "$venv/requirements.txt"; then
    echo "setting up $venv (the client libraries)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/clients/requirements.txt
    cp scripts/clients/requirements.txt "$venv/requirements.txt"
fi
scripts/fetch-model.sh >/dev/null
if [ $build -eq 1 ]; then
    cargo build --quiet --workspace --bin membatch-server --bin membatch
fi

served=all-MiniLM-L6-v2
reranker=tests/fixtures/models/tiny-bert-reranker
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=target/client-test-server.log
target/debug/membatch-server --port "$port" --served-model-name "$served" \
    --reranker "$reranker" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
    if python3 -c "import json, sys, urllib.request; sys.exit(json.load(urllib.request.urlopen('$url/health'))['model'] != 'loaded')" 2>/dev/null; then
        break
    fi
    kill -0 $server 2>/dev/null || { cat "$log"; echo "client-test: the server exited" >&2; exit 1; }
    sleep 0.2
done

MEMBATCH_URL=$url MEMBATCH_SERVED=$served MEMBATCH_RERANKER_FIXTURE=$reranker \
    "$venv/bin/python" scripts/clients/test_clients.py
echo "client-test: $((SECONDS - start)) s"
