#!/usr/bin/env bash
# The Python package's aarch64 wheel, cross-built here, and an import
# smoke test of it under qemu-user-static: Debian 12's arm64 Python 3.11
# and numpy 1.24 (unpacked from Debian's mirror with mmdebstrap into
# target/aarch64-root, no emulation needed to make it) import the wheel,
# embed the tiny fixture's texts and compare them with its
# sentence-transformers reference. Root (apt-get). Not part of CI: the
# release cross build takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
[ ${#need[@]} -eq 0 ] || apt-get install -y -q "${need[@]}" >/dev/null
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
scripts/python-test.sh --setup >/dev/null

start=$SECONDS
(
    cd crates/membatch-python
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
        ../../target/py-membatch/bin/maturin build --release --target aarch64-unknown-linux-gnu
)
wheel=$(ls -t target/wheels/membatch-*-manylinux_*_aarch64.whl | head -1)
echo "python-aarch64: $wheel in $((SECONDS - start)) s"

root=target/aarch64-root
if [ ! -x "$root/usr/bin/python3" ]; then
    rm -rf "$root"
    # --variant=extract: packages unpacked, none of their scripts run (so
    # no emulation), hence the BLAS links the alternatives system would make.
    mmdebstrap --quiet --variant=extract --arch=arm64 --include=python3,python3-numpy \
        bookworm "$root" "deb http://deb.debian.org/debian bookworm main"
    for lib in blas/libblas.so.3 lapack/liblapack.so.3; do
        ln -sf "$lib" "$root/usr/lib/aarch64-linux-gnu/$(basename "$lib")"
    done
fi
rm -rf "$root/opt/membatch"
mkdir -p "$root/opt/membatch"
python3 -m zipfile -e "$wheel" "$root/opt/membatch"
# The fixture by its host path: qemu resolves paths inside the root first,
# then on the host.
fixture="$PWD/tests/fixtures/models/tiny-bert-lasttoken"
PYTHONPATH=/opt/membatch qemu-aarch64-static -L "$root" "$root/usr/bin/python3" - "$fixture" <<'PY'
import json, platform, sys
import numpy as np
import membatch
fixture = sys.argv[1]
ref = json.load(open(f"{fixture}/reference.json"))
v = membatch.Embedder(fixture, threads=2).encode(ref["texts"])
diff = float(np.abs(v - np.asarray(ref["embeddings"], dtype=np.float32)).max())
print(f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}: "
      f"membatch {membatch.__version__} embeds {v.shape}, max abs diff {diff:.1e} to sentence-transformers")
try:
    membatch.Embedder(fixture).encode([None])
    raise SystemExit("no InvalidInput")
except membatch.InvalidInput:
    pass
assert diff <= 1e-5, diff
PY
echo "python-aarch64: passed"
