"""Shared test set-up for the executor suite.

Triton reads TRITON_INTERPRET when it is first imported, and any test module may be
the first to import it (through the kernels), so the switch is made here, before
collection: on a machine without CUDA the Triton kernels run in the interpreter and are
still compared with their references; on the GPU they run compiled.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One intra-op thread: on a small shared CPU machine torch's default (one per core)
# makes every test fight the other suites' processes for the cores and runs ~10x slower.
torch.set_num_threads(1)
