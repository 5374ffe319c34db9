"""Structured outputs in the executor (llguidance): grammars compiled once per key, off the
step thread, cached with a bound (cache.py); the engine's grammar ids bound to them
(registry.py); each sequence's own matcher (sequence.py); per step, the constrained rows'
token masks filled on the CPU while the GPU runs the forward, then applied to the logits in
one launch before sampling (masks.py, kernels/token_bitmask.py). README.md has the design.
"""
