#!/usr/bin/env bash
# README command 2: install what is missing, then run every test: unit, kernel-vs-CPU on the
# GPU adapter (Mesa lavapipe when there is no GPU), SAELens parity, CLI, and the page in headless
# Chromium with WebGPU.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The Vulkan loader complains without it; harmless, but noisy.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/saelab-xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# Style and lints first (seconds once built; they fail fast): rustfmt, clippy natively on every
# target and on the page's wasm32 build.
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --target wasm32-unknown-unknown --lib --bins -- -D warnings
cargo test --release --all-targets
./scripts/build-web.sh
(cd tests/browser && node --test --test-concurrency=1 .)
