"""Tensor parallelism: one rank's share of the weights and adapters (Megatron splits,
S-LoRA-style adapter shares), the group's collectives and the start of its ranks; the
rank processes themselves are runtime/'s server (rank 0) and worker (README.md)."""
