#!/usr/bin/env bash
# Packs what a run on the GPU device needs beside the working tree into carry/
# (git-ignored): Node 22 (xz, ~29 MB) and the backend bundled by esbuild (the device
# has no node_modules and no network).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p carry
[[ -f carry/node22.xz ]] || xz -T2 -6 -c node_modules/node/bin/node > carry/node22.xz
node_modules/.bin/esbuild gpu-backend/src/server/main.ts --bundle --platform=node \
  --format=esm --target=node22 --outfile=carry/backend.mjs --log-level=warning \
  --banner:js="import{createRequire}from'module';const require=createRequire(import.meta.url);"
ls -la carry
