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
cargo fmt --check
# Clippy runs inside the real builds, with every warning (rustc's and clippy's) an error: clippy's
# driver as the workspace's rustc wrapper lints exactly what `cargo clippy --all-targets -- -D
# warnings` lints, natively (all targets: lib, CLI, tests) and for the page's wasm32 build, without
# the second, check-only compile of every dependency that `cargo clippy` would add (about 6 minutes
# of a cold CI run on 2 cores). CLIPPY_ARGS is how cargo-clippy passes `-D warnings` to the driver.
export RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo test --release --all-targets
./scripts/build-web.sh
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
(cd tests/browser && node --test --test-concurrency=1 .)
