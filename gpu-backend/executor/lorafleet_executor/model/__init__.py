"""The base model and what one forward pass reads: its config and weights, the Llama
forward, RoPE tables, the unified pool, PEFT adapters packed into pool pages and the
step's LoRA metadata, and sampling. Imports kernels/ and errors; no protocol, no runtime."""
