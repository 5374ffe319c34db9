"""Tensor parallelism: one executor process per rank, Megatron splits, S-LoRA-style
adapter shares (README.md)."""
