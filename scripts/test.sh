#!/usr/bin/env bash
# The whole membatch test suite, on a fresh machine or an old one:
# fetches the real model weights (idempotent), then runs every test of the
# workspace (the library, the membatch CLI, the test kit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-model.sh
# all-mpnet-base-v2 (438 MB) for the MPNet parity tests, run below; two
# MiniLM fine-tunes whose files are the real cases of a missing pooling
# config and of a prompts block (tests/model_variants.rs).
scripts/fetch-model.sh all-mpnet-base-v2
scripts/fetch-model.sh rohan-pristine
scripts/fetch-model.sh sre-embedding-model

# The backend-free core must build and pass every test that does not need
# the BERT backend (the others are compiled out without `candle`).
cargo test --no-default-features

# Everything: unit tests, integration tests (real weights and golden file),
# doctests (README included), the CLI's and the server's tests; examples are
# built too, which the CLI tests run.
cargo test --workspace --exclude membatch-datafusion

# MPNet parity with sentence-transformers on the real all-mpnet-base-v2
# (#[ignore]d above so that a plain `cargo test` does not need 438 MB).
cargo test --test mpnet -- --ignored

# The DataFusion/Ballista crate, once, in its own profile (DataFusion's
# hundreds of crates unoptimised, the model's path optimised; Cargo.toml).
cargo test -p membatch-datafusion --profile df

# Behaviour under a real memory cgroup limit, and the codebase index on a
# full disk: these need root (to create cgroups, to mount a small tmpfs),
# so they are #[ignore]d in the runs above.
if [ "$(id -u)" -eq 0 ]; then
    cargo test --test real_limits -- --ignored
    cargo test -p membatch-cli --test faults -- --ignored
else
    echo "NOT RUN: tests/real_limits.rs and the CLI's full-disk test need root (you are uid $(id -u)); CI runs them as root." >&2
fi
