#!/usr/bin/env bash
# The whole membatch test suite, on a fresh machine or an old one:
# fetches the real model weights (idempotent), then runs every test of the
# workspace (the library, the membatch CLI, the test kit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-model.sh

# The backend-free core must build and pass every test that does not need
# the BERT backend (the others are compiled out without `candle`).
cargo test --no-default-features

# Everything: unit tests, integration tests (real weights and golden file),
# doctests (README included), the CLI's tests; examples are built too,
# which the CLI tests run.
cargo test --workspace

# Behaviour under a real memory cgroup limit: needs root to create cgroups,
# so these tests are #[ignore]d in the runs above.
if [ "$(id -u)" -eq 0 ]; then
    cargo test --test real_limits -- --ignored
else
    echo "NOT RUN: tests/real_limits.rs needs root to create a memory cgroup (you are uid $(id -u)); CI runs it as root." >&2
fi
