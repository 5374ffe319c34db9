"""RoPE's settings read from config.json as transformers reads them (`rope_parameters`,
or `rope_theta` + `rope_scaling` in older files), and the longest context they are served
to exactly as transformers computes them.

Types served: default, linear, llama3 and yarn (static in transformers: the same at every
length), and dynamic NTK within `max_position_embeddings`, where transformers uses the
unscaled frequencies; past it transformers re-derives the base from the length of each
forward and keeps keys rotated by earlier bases, so the result depends on how a sequence
was chunked: contexts stop at `max_position_embeddings`. Anything else (longrope, per-layer
parameters, a partial rotary factor) is refused by name.

Example:
    rope = rope_config(json.loads(Path("config.json").read_text()), 8192)
    rope.kind, rope.attention_factor  # ("yarn", 1.139)
"""

import math
from dataclasses import dataclass

from ..errors import ModelInvalid

SERVED_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")


@dataclass(frozen=True)
class RopeConfig:
    theta: float
    kind: str  # default | linear | llama3 | yarn (dynamic is served as default)
    factor: float = 1.0
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    original_max_position: int = 0  # llama3 / yarn: the pretraining context
    beta_fast: float = 32.0  # yarn: the ramp's bounds, in rotations
    beta_slow: float = 1.0
    truncate: bool = True  # yarn: the ramp's bounds rounded outwards
    attention_factor: float = 1.0  # yarn: cos and sin are multiplied by it


def rope_config(raw: dict, max_position_embeddings: int) -> RopeConfig:
    params = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    if params and all(isinstance(v, dict) for v in params.values()):
        raise ModelInvalid(f"per-layer rope_parameters ({', '.join(params)}) are not supported")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in SERVED_TYPES:
        raise ModelInvalid(f"rope type {kind} is not supported ({', '.join(SERVED_TYPES)})")
    partial = float(params.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0)))
    if partial != 1.0:
        # Llama's attention rotates whole heads: transformers fails on a partial table too.
        raise ModelInvalid(f"partial_rotary_factor {partial} is not supported (1.0)")
    theta = float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))
    if kind in ("default", "dynamic"):
        return RopeConfig(theta=theta, kind="default")
    factor = params.get("factor")
    if kind == "linear":
        return RopeConfig(theta=theta, kind="linear", factor=float(factor))
    # transformers gives a top-level original_max_position_embeddings priority (Phi-3 style)
    original = int(
        raw.get("original_max_position_embeddings")
        or params.get("original_max_position_embeddings")
        or max_position_embeddings
    )
    if kind == "llama3":
        return RopeConfig(
            theta=theta,
            kind="llama3",
            factor=float(factor),
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_max_position=original,
        )
    factor = float(factor) if factor is not None else max_position_embeddings / original
    return RopeConfig(
        theta=theta,
        kind="yarn",
        factor=factor,
        original_max_position=original,
        beta_fast=float(params.get("beta_fast") or 32.0),
        beta_slow=float(params.get("beta_slow") or 1.0),
        truncate=bool(params.get("truncate", True)),
        attention_factor=_yarn_attention_factor(params, factor),
    )


def rope_max_position(rope: RopeConfig, max_position_embeddings: int) -> int:
    """The longest context served: yarn's tables hold factor x the pretraining context
    (as vLLM's), the others stop at max_position_embeddings."""
    if rope.kind == "yarn":
        return max(max_position_embeddings, int(rope.original_max_position * rope.factor))
    return max_position_embeddings


def _yarn_attention_factor(params: dict, factor: float) -> float:
    if params.get("attention_factor") is not None:
        return float(params["attention_factor"])

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    m, m_all = params.get("mscale"), params.get("mscale_all_dim")
    if m and m_all:
        return mscale(factor, float(m)) / mscale(factor, float(m_all))
    return mscale(factor)
