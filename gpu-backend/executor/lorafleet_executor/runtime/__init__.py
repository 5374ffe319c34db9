"""The executor's processes and what they own: the protocol server (rank 0) and the
tensor-parallel worker ranks, the Executor that carries out the engine's messages, the
host tier, adapter staging, the memory budget, warm-up and the step profiler."""
