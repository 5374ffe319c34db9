#!/bin/bash
# Every measurement of REPORT.md, one after another (the machine has 2 shared cores: never in parallel).
cd "$(dirname "$0")"
PY=.venv/bin/python
mkdir -p results
for tok in tiny smollm2 llama32k; do
  for eng in llguidance xgrammar; do
    $PY bench_drive.py $eng $tok 2>&1 | grep -v "Warning: " > results/drive_${eng}_${tok}.log
  done
done
$PY summarize_drive.py > results/drive_summary.txt
$PY bench_probes.py smollm2 2>/dev/null > results/probes.md
$PY features.py smollm2 > results/features_smollm2.log 2>&1
$PY features.py llama32k > results/features_llama32k.log 2>&1
for tok in smollm2 llama32k; do
  for eng in llguidance xgrammar; do
    $PY bench_compile.py $eng $tok 3 2>&1 | grep -v "Warning: " > results/compile_${eng}_${tok}.log
  done
done
$PY gil_apply.py smollm2 > results/gil_apply_smollm2.log 2>&1
rm -f results/batch.jsonl
for rep in 1 2 3; do
  for eng in llguidance xgrammar; do
    $PY bench_batch.py $eng smollm2 1 batch 200 64 2>/dev/null | tail -1
    $PY bench_batch.py $eng smollm2 2 batch 200 64 2>/dev/null | tail -1
    $PY bench_batch.py $eng smollm2 1 serial 200 64 2>/dev/null | tail -1
    $PY bench_batch.py $eng smollm2 2 batch 200 64 cold 2>/dev/null | tail -1
  done
done > results/batch.log
.venv/bin/python hostile.py smollm2 > results/hostile_smollm2.log 2>&1
$PY gil2.py smollm2 > results/gil2_smollm2.log 2>&1
for eng in llguidance xgrammar; do $PY memory.py $eng 2>/dev/null; done > results/memory.log
$PY string_states.py smollm2 2>/dev/null > results/string_states_smollm2.log
$PY slow_states.py xgrammar smollm2 150 2>/dev/null > results/slow_states_xgrammar.log
$PY slow_states.py llguidance smollm2 150 2>/dev/null > results/slow_states_llguidance.log
for eng in llguidance xgrammar; do SKIP=120 $PY bench_batch.py $eng smollm2 1 batch 200 64 2>/dev/null | tail -1; done > results/batch_skip120.log
$PY summarize_batch.py > results/batch_table.md
echo done > results/ALL_DONE
