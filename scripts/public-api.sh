#!/usr/bin/env bash
# The public API of each published library crate, one item per line
# (scripts/public_api.py), compared with the committed listing in
# docs/public-api/: a change to the API is a change to that file, made on
# purpose. `--bless` rewrites the listings.
#
# rustdoc's JSON output is unstable; RUSTC_BOOTSTRAP=1 enables it on the
# stable toolchain the rest of the build uses. It is set for rustdoc alone,
# through a wrapper: set for cargo, it would change every dependency's
# fingerprint and re-check them all (minutes) instead of reusing the
# metadata `cargo clippy` and `cargo doc` left.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bless=0
[ "${1:-}" = "--bless" ] && bless=1
status=0
mkdir -p target
wrapper=target/rustdoc-json
printf '#!/bin/sh\nRUSTC_BOOTSTRAP=1 exec rustdoc "$@"\n' > "$wrapper"
chmod +x "$wrapper"
# One `cargo doc` of the workspace writes every crate's JSON: selecting the
# whole workspace keeps the features (and so the dependencies' metadata)
# of the build before it, where `cargo rustdoc -p CRATE` would resolve one
# crate's features and re-check its dependencies.
RUSTDOC="$PWD/$wrapper" RUSTDOCFLAGS="-Z unstable-options --output-format json" \
    cargo doc -q --workspace --no-deps
# The libraries other crates build on; the server's and the DataFusion
# crate's libraries serve their own binaries.
for crate in membatch membatch-corpus; do
    listing="docs/public-api/$crate.txt"
    fresh="target/doc/${crate//-/_}.api.txt"
    python3 scripts/public_api.py "target/doc/${crate//-/_}.json" > "$fresh"
    if [ "$bless" -eq 1 ]; then
        cp "$fresh" "$listing"
        echo "$listing: $(grep -c '' "$listing") lines"
    elif ! diff -u "$listing" "$fresh"; then
        echo "public-api: the public API of $crate changed (diff above); if that is meant," >&2
        echo "  run scripts/public-api.sh --bless and commit $listing" >&2
        status=1
    fi
done
exit $status
