#!/usr/bin/env bash
# Packs what a run on the GPU device needs beside the working tree into carry/
# (git-ignored): Node 22 (xz, ~29 MB), the backend bundled by esbuild (the device has no
# node_modules and no network) and the executor's one Python package the device's Python
# lacks, llguidance (one abi3 wheel, ~3 MB; scripts/device-run.sh installs it offline).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p carry
[[ -f carry/node22.xz ]] || xz -T2 -6 -c node_modules/node/bin/node > carry/node22.xz
node_modules/.bin/esbuild gpu-backend/src/server/main.ts --bundle --platform=node \
  --format=esm --target=node22 --outfile=carry/backend.mjs --log-level=warning \
  --banner:js="import{createRequire}from'module';const require=createRequire(import.meta.url);"
# The host's Python is 3.12 on glibc 2.39: llguidance 1.9.1's Linux wheel is manylinux_2_31.
[[ -f carry/llguidance-1.9.1-cp39-abi3-manylinux_2_31_x86_64.whl ]] ||
  .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_31_x86_64 -d carry llguidance==1.9.1
ls -la carry
