#!/bin/bash
# Second pass with CPU-time clocks (thread CPU for batch 1, process CPU for batch 64).
cd "$(dirname "$0")"
PY=.venv/bin/python
for eng in llguidance xgrammar; do
  $PY bench_drive.py $eng smollm2 2>&1 | grep -v "Warning: " > results/drive_${eng}_smollm2.log
done
for rep in 1 2; do
  for eng in llguidance xgrammar; do
    $PY bench_batch.py $eng smollm2 1 batch 200 64 2>/dev/null | tail -1
    $PY bench_batch.py $eng smollm2 2 batch 200 64 2>/dev/null | tail -1
  done
done > results/batch_cpu.log
echo done > results/CPU_DONE
