"""CUDA graphs of forward passes: decode steps and mixed (prefill) steps captured at
bucketed sizes, and the static buffers a step is copied into before a replay."""
