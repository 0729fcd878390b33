#!/usr/bin/env bash
# The whole membatch test suite, on a fresh machine or an old one:
# fetches the real model weights (idempotent), then runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-model.sh

# The backend-free core must build and pass its unit tests without candle.
cargo test --no-default-features --lib

# Everything: unit tests, integration tests (real weights and golden file),
# doctests (README included); examples are built too, which the CLI tests run.
cargo test
