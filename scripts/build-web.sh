#!/usr/bin/env bash
# Builds the page into dist/: the wasm app (release), its JS glue, index.html and www/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --target wasm32-unknown-unknown --bin saelab
rm -rf dist
mkdir -p dist
wasm-bindgen --target web --no-typescript --out-dir dist target/wasm32-unknown-unknown/release/saelab.wasm
cp index.html dist/
cp -r www/. dist/
echo "build-web: dist/ is ready ($(du -sh dist | cut -f1))"
