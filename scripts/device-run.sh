#!/usr/bin/env bash
# The GPU run, as made through the device tool (no Node, no network there; see
# bench/README.md): the executor's GPU tests, the LoRA kernel micro-benchmark and the
# ablations scenario at Llama-2-7B shapes, everything written to $OUT.
#   carry: carry (node22.xz + backend.mjs from scripts/bundle-backend.sh),
#          .cache/fixtures/tiny-llama, .cache/fixtures/adapters
#   LORAFLEET_GIT_SHA=<sha> bash scripts/device-run.sh [tests,kernels,ablations]
# More parts (not in the default): bmm (slora vs the bmm baseline, 15 s: bmm is slow),
# peft (slora vs HF PEFT on the PEFT batch), pressure (the `pressure` scenario: slora vs
# no-unifymem in a 100,000-page pool that holds a wave of 32 long requests' KV and their
# 32 rank-64 adapters shared, not split in halves; ~4 minutes), roofline (base decode vs the bandwidth floor), coldload (adapter host
# tier -> pool, beside decode; staging serial vs pooled), c64 / c128 (the ablations' trace
# with the client holding 64 / 128 requests in flight at most: each engine at the same
# concurrency, so the ratios compare capacity rather than where the trace's tail ends).
# Each of ablations, bmm and peft takes a call of its own (~4 minutes). Their
# results go straight to $OUT files (no pipe: a killed pipeline loses its output); logs
# and profiles come back as $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
parts="${1:-tests,kernels,ablations}"
export PYTHONPATH=$PWD/gpu-backend/executor PYTHONUNBUFFERED=1
export LORAFLEET_PYTHON=$(command -v python3) LORAFLEET_FIXTURES=$PWD/.cache/fixtures
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"

if [[ $parts == *tests* ]]; then
  (cd gpu-backend/executor && timeout 420 python3 -m pytest -q -m gpu -p no:cacheprovider \
    --junitxml="$OUT/pytest-gpu.xml" tests/test_kernels_lora.py tests/test_kernels_attention.py \
    tests/test_kernels_fused.py tests/test_kernels_bmm.py tests/test_executor_gpu.py \
    tests/test_stage_processes.py tests/test_host_buffers.py) 2>&1 | tail -25 > "$OUT/pytest-gpu.txt"
fi
if [[ $parts == *kernels* ]]; then
  timeout 90 python3 bench/kernels/lora_bench.py --repeats 9 --out "$OUT/lora_kernels.json" \
    2>&1 | tail -5
fi
scenario() {  # <scenario> <result name> <server args> <scenario args...>
  local scenario=$1 name=$2 server_args=$3
  shift 3
  [[ -x /tmp/node ]] || { xz -dc carry/node22.xz > /tmp/node && chmod +x /tmp/node; }
  rm -rf /tmp/results
  timeout 560 /tmp/node bench/src/main.ts "$scenario" "$@" \
    --server-args="$server_args" --server-entry carry/backend.mjs \
    --work-dir /tmp/bench --out /tmp/results > "$OUT/$name.log" 2>&1
  cp /tmp/results/*/"$scenario".json "$OUT/$name.json" 2>/dev/null
  cp /tmp/results/summary.json "$OUT/summary-$name.json" 2>/dev/null
  for log in /tmp/bench/logs/"$scenario".*.server.log; do  # the backends' own logs
    [[ -f $log ]] && mv "$log" "$OUT/$name.$(basename "$log" .log | cut -d. -f2).server.log"
  done
}
ablations() {  # <result name> <server args> <ablations args...>
  local name=$1 server_args=$2
  shift 2
  scenario ablations "$name" "--max-loras 1024 $server_args" "$@"
}
if [[ $parts == *ablations* ]]; then
  ablations ablations "" --variants base,slora,no-unifymem --no-peft
fi
if [[ $parts == *bmm* ]]; then
  ablations ablations-bmm "" --duration 15 --variants slora,bmm --no-peft
fi
if [[ $parts == *peft* ]]; then
  ablations ablations-peft "" --adapters 32 --duration 2 --variants slora
fi
if [[ $parts == *pressure* ]]; then
  scenario pressure pressure ""
fi
for c in 64 128; do
  if [[ $parts == *c$c* ]]; then
    ablations ablations-c$c "" --variants base,slora,no-unifymem --no-peft --max-concurrency $c
  fi
done
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
  timeout 300 python3 bench/gpu/stage_bench.py --count 32 --rank 32 --workers 4 --dir /tmp/stage-bench \
    --out "$OUT/stage.json" \
    > "$OUT/stage.log" 2>&1
fi
# The device returns at most 8 files: logs and profiles travel as one archive.
(cd "$OUT" && shopt -s nullglob && logs=(*.log *.txt) && ((${#logs[@]})) &&
  tar czf logs.tgz "${logs[@]}" && rm "${logs[@]}")
ls -la "$OUT"
