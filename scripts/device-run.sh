#!/usr/bin/env bash
# The GPU run, as made through the device tool (no Node, no network there; see
# bench/README.md): the executor's GPU tests, the LoRA kernel micro-benchmark and the
# ablations scenario at Llama-2-7B shapes, everything written to $OUT.
#   carry: carry (node22.xz + backend.mjs from scripts/bundle-backend.sh),
#          .cache/fixtures/tiny-llama, .cache/fixtures/adapters
#   LORAFLEET_GIT_SHA=<sha> bash scripts/device-run.sh [tests,kernels,ablations]
# More parts (not in the default): roofline (base decode vs the bandwidth floor),
# coldload (adapter host tier -> pool, beside decode; staging serial vs pooled). Their
# results go straight to $OUT files (no pipe: a killed pipeline loses its output); logs
# and profiles come back as $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
parts="${1:-tests,kernels,ablations}"
export PYTHONPATH=$PWD/gpu-backend/executor PYTHONUNBUFFERED=1
export LORAFLEET_PYTHON=$(command -v python3) LORAFLEET_FIXTURES=$PWD/.cache/fixtures
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"

if [[ $parts == *tests* ]]; then
  (cd gpu-backend/executor && timeout 300 python3 -m pytest -q -m gpu -p no:cacheprovider \
    --junitxml="$OUT/pytest-gpu.xml" tests/test_kernels_lora.py tests/test_kernels_attention.py \
    tests/test_kernels_fused.py tests/test_kernels_bmm.py tests/test_executor_gpu.py) 2>&1 | tail -25 > "$OUT/pytest-gpu.txt"
fi
if [[ $parts == *kernels* ]]; then
  timeout 90 python3 bench/kernels/lora_bench.py --repeats 9 --out "$OUT/lora_kernels.json" \
    2>&1 | tail -5
fi
if [[ $parts == *ablations* ]]; then
  xz -dc carry/node22.xz > /tmp/node && chmod +x /tmp/node
  timeout 500 /tmp/node bench/src/main.ts ablations --duration 15 \
    --variants base,slora,bmm,no-unifymem \
    --server-args="--max-loras 1024" --server-entry carry/backend.mjs --work-dir /tmp/bench \
    --out /tmp/results \
    > "$OUT/ablations.log" 2>&1
  cp /tmp/results/summary.json /tmp/results/*/ablations.json "$OUT/" 2>/dev/null
  tail -60 /tmp/bench/logs/*.log 2>/dev/null | tail -40 > "$OUT/server-tail.log"
fi
if [[ $parts == *roofline* ]]; then
  timeout 240 python3 bench/gpu/roofline.py --out "$OUT/roofline.json" \
    --profile "$OUT/roofline-profile.txt" > "$OUT/roofline.log" 2>&1
fi
if [[ $parts == *coldload* ]]; then
  model=/tmp/bench/models/llama-2-7b  # where the ablations part generates it too
  if [[ ! -f $model/tokenizer.json ]]; then  # make_model.py writes the tokenizer last
    timeout 300 python3 bench/gpu/make_model.py --shape llama-2-7b --out "$model" \
      > "$OUT/make_model.log" 2>&1
  fi
  timeout 240 python3 bench/gpu/cold_load.py --model "$model" --out "$OUT/cold_load.json" \
    > "$OUT/cold_load.log" 2>&1
  timeout 120 python3 bench/gpu/stage_bench.py --threads 1,4,8 --out "$OUT/stage.json" \
    > "$OUT/stage.log" 2>&1
fi
# The device returns at most 8 files: logs and profiles travel as one archive.
(cd "$OUT" && shopt -s nullglob && logs=(*.log *.txt) && ((${#logs[@]})) &&
  tar czf logs.tgz "${logs[@]}" && rm "${logs[@]}")
ls -la "$OUT"
