#!/usr/bin/env bash
# The GPU run, as made through the device tool (no Node, no network there; see
# bench/README.md): the executor's GPU tests, the LoRA kernel micro-benchmark and the
# ablations scenario at Llama-2-7B shapes, everything written to $OUT.
#   carry: carry (node22.xz + backend.mjs + the llguidance wheel, from
#          scripts/bundle-backend.sh), .cache/fixtures/tiny-llama, .cache/fixtures/adapters,
#          and for grammar and stepprofile .cache/grammar/llama32k (bench/grammar/README.md
#          "llama32k")
#   LORAFLEET_GIT_SHA=<sha> bash scripts/device-run.sh [tests,kernels,ablations]  (tests alone: ~8 min)
# More parts (not in the default): bmm (slora vs the bmm baseline, 15 s: bmm is slow),
# peft (slora vs HF PEFT on the PEFT batch), pressure (the `pressure` scenario: slora vs
# no-unifymem in a 100,000-page pool that holds a wave of 32 long requests' KV and their
# 32 rank-64 adapters shared, not split in halves; ~4 minutes), roofline (base decode vs
# the bandwidth floor), coldload (adapter host tier -> pool, beside decode; staging serial
# vs pooled), grammar (structured outputs: a decode batch of 64, each row its own adapter
# and JSON schema, vs the same batch free, with Llama-2-7B shapes and the llama32k
# tokenizer), c64 / c128 (the ablations' trace
# with the client holding 64 / 128 requests in flight at most: each engine at the same
# concurrency, so the ratios compare capacity rather than where the trace's tail ends),
# prefix-mooncake (prefix caching on vs off on the Mooncake conversation trace; carry
# also carry/mooncake_conversation_trace.jsonl.gz, bench/README.md "Prefix caching"),
# prefix-saas (on vs off on SaaS chat sessions), prefix-zerohit (on vs off on prompts that
# share nothing, 64 in flight: what caching costs),
# fp8roofline (FP8 base weights vs bf16 at decode, batch 64 and 128, side by side in one
# process, pool pages each leaves; bench/gpu/fp8_decode.py), fp8ablations (the ablations'
# trace, 64 in flight, base and slora on an FP8 base: --quantization fp8), fp8tests (the
# FP8 GPU tests alone), exectests (the executor-level GPU tests without the kernel grids,
# ~4 minutes), stepprofile (the executor's decode steps at batch 64, base and on 64
# adapters of ranks 8-64, launched ahead as served: HtoD copies per step and the GPU's idle
# fraction between steps; bench/gpu/step_profile.py --model). Parts are whole names:
# fp8tests is not tests.
# Each of ablations, bmm, peft and the prefix parts takes a call of its own. Their
# results go straight to $OUT files (no pipe: a killed pipeline loses its output); logs
# and profiles come back as $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
parts="${1:-tests,kernels,ablations}"
# The executor imports llguidance (structured outputs); the host has no network, so the
# carried wheel goes into a folder on PYTHONPATH (it has no dependencies, one abi3 wheel).
pylib=/tmp/pylib
if ! python3 -c "import llguidance" 2>/dev/null; then
  python3 -m pip install --quiet --no-index --no-deps --target "$pylib" \
    carry/llguidance-1.9.1-cp39-abi3-manylinux_2_31_x86_64.whl
fi
has() { [[ ",$parts," == *",$1,"* ]]; }  # whole names: fp8tests is not tests
export PYTHONPATH=$pylib:$PWD/gpu-backend/executor PYTHONUNBUFFERED=1
export LORAFLEET_PYTHON=$(command -v python3) LORAFLEET_FIXTURES=$PWD/.cache/fixtures
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"

# The GPU tests of `files` under a limit of `seconds`: SIGINT at the limit makes pytest
# stop and still name what failed (-rf); a test running over 60 s dumps its stack
# (faulthandler).
gpu_pytest() {  # <seconds> <files...>
  local seconds=$1
  shift
  (cd gpu-backend/executor && timeout -s INT "$seconds" python3 -m pytest -q -m gpu \
    -p no:cacheprovider -rf --tb=short -o faulthandler_timeout=60 \
    --junitxml="$OUT/pytest-gpu.xml" "$@") > "$OUT/pytest-gpu.txt" 2>&1
  tail -40 "$OUT/pytest-gpu.txt"
}
executor_tests=(tests/test_executor_gpu.py tests/test_kernels_token_bitmask.py
  tests/test_fp8_gpu.py tests/test_fp8_quality.py)
if has tests; then
  # The executor-level tests first (few, and the ones a change breaks), the kernel grids
  # after, the host-memory tests last (at 489d089 an H200 run was killed at 420 s while,
  # by its progress dots, test_host_buffers' GPU test ran: 726 of 761 done). Run `tests`
  # in a call of its own.
  gpu_pytest 540 "${executor_tests[@]}" tests/test_kernels_fp8.py tests/test_kernels_fused.py \
    tests/test_kernels_bmm.py tests/test_kernels_attention.py tests/test_kernels_lora.py \
    tests/test_stage_processes.py tests/test_host_buffers.py
fi
if has exectests; then
  # The executor-level GPU tests alone (no kernel grids): what a change to the executor
  # breaks, in a call that leaves time for a benchmark part.
  gpu_pytest 280 "${executor_tests[@]}" tests/test_host_buffers.py tests/test_kernels_fp8.py
fi
if has fp8tests; then
  (cd gpu-backend/executor && timeout 420 python3 -m pytest -q -m gpu -p no:cacheprovider -rA \
    --junitxml="$OUT/pytest-fp8-gpu.xml" tests/test_kernels_fp8.py tests/test_fp8_gpu.py \
    tests/test_fp8_quality.py) 2>&1 | tail -40 > "$OUT/pytest-fp8-gpu.txt"
fi
if has kernels; then
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
if has ablations; then
  ablations ablations "" --variants base,slora,no-unifymem --no-peft
fi
if has bmm; then
  ablations ablations-bmm "" --duration 15 --variants slora,bmm --no-peft
fi
if has peft; then
  ablations ablations-peft "" --adapters 32 --duration 2 --variants slora
fi
if has pressure; then
  scenario pressure pressure ""
fi
for c in 64 128; do
  if has c$c; then
    ablations ablations-c$c "" --variants base,slora,no-unifymem --no-peft --max-concurrency $c
  fi
done
if has prefix-mooncake; then
  scenario prefix-mooncake prefix-mooncake "--max-loras 1024" \
    --mooncake-trace carry/mooncake_conversation_trace.jsonl.gz
fi
if has prefix-saas; then
  scenario prefix-saas prefix-saas "--max-loras 1024"
fi
if has prefix-zerohit; then
  scenario prefix-zero-hit prefix-zero-hit "--max-loras 1024" --max-concurrency 64
fi
if has fp8roofline; then
  timeout 420 python3 bench/gpu/fp8_decode.py --out "$OUT/fp8_decode.json" \
    > "$OUT/fp8_decode.log" 2>&1
fi
if has fp8ablations; then
  ablations ablations-fp8 "--quantization fp8" --variants base,slora --no-peft --max-concurrency 64
fi
if has roofline; then
  timeout 240 python3 bench/gpu/roofline.py --out "$OUT/roofline.json" \
    --profile "$OUT/roofline-profile.txt" > "$OUT/roofline.log" 2>&1
fi
if has coldload; then
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
# stepprofile and grammar share one Llama-2-7B-shaped model (random weights) with the
# llama32k tokenizer, made once (~13 GB; make_model.py writes the tokenizer last).
llama7b_llama32k() {
  local model=/tmp/bench/models/llama-2-7b-llama32k
  if [[ ! -f $model/tokenizer.json ]]; then
    timeout 300 python3 bench/gpu/make_model.py --shape llama-2-7b --out "$model" \
      --tokenizer-from .cache/grammar/llama32k > "$OUT/make_model.log" 2>&1
  fi
  echo "$model"
}
if has stepprofile; then
  model=$(llama7b_llama32k)
  timeout 120 python3 bench/gpu/make_adapters.py --model "$model" --out /tmp/step-adapters \
    --count 64 --ranks 8,16,32,64 --distinct 4 > "$OUT/make_adapters.log" 2>&1
  timeout 240 python3 bench/gpu/step_profile.py --model "$model" --adapters-dir /tmp/step-adapters \
    --batch 64 --out "$OUT/step_profile_served.json" > "$OUT/step_profile_served.log" 2>&1
fi
if has grammar; then
  model=$(llama7b_llama32k)
  timeout 420 python3 bench/gpu/grammar_bench.py --model "$model" --out "$OUT/grammar.json" \
    > "$OUT/grammar.log" 2>&1
fi
# The device returns at most 8 files: logs and profiles travel as one archive.
(cd "$OUT" && shopt -s nullglob && logs=(*.log *.txt) && ((${#logs[@]})) &&
  tar czf logs.tgz "${logs[@]}" && rm "${logs[@]}")
ls -la "$OUT"
