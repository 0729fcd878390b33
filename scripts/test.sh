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

# Behaviour under a real memory cgroup limit: needs root to create cgroups.
if [ "$(id -u)" -eq 0 ]; then
    cargo test --features real-limit-tests --test real_limits
else
    echo "NOT RUN: tests/real_limits.rs needs root to create a memory cgroup (you are uid $(id -u)); CI runs it as root." >&2
fi
