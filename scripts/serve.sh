#!/usr/bin/env bash
# README command 1: install what is missing, build the CLI and the page, serve the page.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin saelab
./scripts/build-web.sh
exec python3 scripts/serve.py "${PORT:-8080}"
