"""Rotary position embedding tables (Llama RoPE with linear / dynamic-NTK / llama3 scaling).

The table is built once for every position up to max_position; a step gathers its
rows by token position, so prefill chunks and decode tokens of many sequences
rotate in one call. Layout is HF's rotate-half (first half / second half of each head);
the rotation itself is kernels/rope_kv.py's.

Example:
    cos, sin = rope_tables(cfg.rope, cfg.head_dim, cfg.max_position, device)
    q = rope_write_kv(qkv, positions, cos, sin, pool, k_pages, v_pages, Hq, Hkv, D)
"""

import math

import torch

from .config import RopeConfig


def inverse_frequencies(rope: RopeConfig, head_dim: int, max_position: int) -> torch.Tensor:
    """float32 [head_dim / 2]."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    base = rope.theta
    if rope.kind == "dynamic" and rope.factor > 1:
        # vLLM's static form of dynamic NTK: the base that fits max_position (= factor x
        # the pretraining context) is used at every length.
        orig = rope.original_max_position or max_position
        base = base * (rope.factor * max_position / orig - (rope.factor - 1)) ** (
            head_dim / (head_dim - 2)
        )
    inv_freq = 1.0 / (base**exponents)
    if rope.kind == "linear":
        inv_freq = inv_freq / rope.factor
    elif rope.kind == "llama3":
        inv_freq = _llama3_scaled(inv_freq, rope)
    return inv_freq


def _llama3_scaled(inv_freq: torch.Tensor, rope: RopeConfig) -> torch.Tensor:
    # Llama 3.1: long wavelengths are divided by factor, short ones kept, a smooth ramp between.
    low_wavelen = rope.original_max_position / rope.low_freq_factor
    high_wavelen = rope.original_max_position / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (rope.original_max_position / wavelen - rope.low_freq_factor) / (
        rope.high_freq_factor - rope.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def rope_tables(
    rope: RopeConfig, head_dim: int, max_position: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: float32 [max_position, head_dim] (each frequency repeated for both halves)."""
    inv_freq = inverse_frequencies(rope, head_dim, max_position)
    angles = torch.outer(torch.arange(max_position, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(device), angles.sin().to(device)
