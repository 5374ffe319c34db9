"""Rotary position embedding tables (Llama RoPE; linear, llama3 and yarn scaling), as
transformers computes them (rope_config.py says which types are served and how far).

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

from .rope_config import RopeConfig


def inverse_frequencies(rope: RopeConfig, head_dim: int) -> torch.Tensor:
    """float32 [head_dim / 2]."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (rope.theta**exponents)
    if rope.kind == "linear":
        inv_freq = inv_freq / rope.factor
    elif rope.kind == "llama3":
        inv_freq = _llama3_scaled(inv_freq, rope)
    elif rope.kind == "yarn":
        inv_freq = _yarn_scaled(inv_freq, rope, head_dim)
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


def _yarn_scaled(inv_freq: torch.Tensor, rope: RopeConfig, head_dim: int) -> torch.Tensor:
    # YaRN (Peng et al., 2023): dimensions that rotate fewer than beta_slow times over the
    # pretraining context are interpolated (divided by factor), those above beta_fast kept,
    # a linear ramp between.
    def correction_dim(rotations: float) -> float:
        ratio = rope.original_max_position / (rotations * 2 * math.pi)
        return head_dim * math.log(ratio) / (2 * math.log(rope.theta))

    low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp
    return inv_freq / rope.factor * (1 - keep) + inv_freq * keep


def rope_tables(
    rope: RopeConfig, head_dim: int, max_position: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: float32 [max_position, head_dim] (each frequency repeated for both halves),
    times yarn's attention factor (1 otherwise), as transformers scales them."""
    inv_freq = inverse_frequencies(rope, head_dim)
    angles = torch.outer(torch.arange(max_position, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    scale = rope.attention_factor
    return (angles.cos() * scale).to(device), (angles.sin() * scale).to(device)
