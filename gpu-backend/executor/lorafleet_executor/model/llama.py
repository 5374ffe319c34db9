"""The Llama-family forward pass over a flattened batch, reading and writing the unified pool.

Per layer: RMSNorm -> fused qkv GEMM (+ bias, + LoRA for q/k/v) -> RoPE with K/V written
into their pool pages -> paged attention -> o GEMM (+ LoRA, + bias) -> residual + RMSNorm
-> fused gate_up GEMM (+ bias, + LoRA) -> SwiGLU -> down GEMM (+ LoRA, + bias) -> residual
(added by the next norm). Biases are there when the checkpoint has them (Qwen2's q/k/v,
Llama's attention_bias and mlp_bias). The four GEMMs are dense or FP8 (linear.py): LoRA
reads the same activations and adds its delta to their output either way. Besides the
GEMMs each layer is four launches (kernels/rms_norm.py, rope_kv.py, silu_mul.py,
attention): at decode batch sizes the torch form's ~35 elementwise launches
per layer cost about a fifth of the step. Only the rows that sample go through the
final norm and lm_head.

With a tensor-parallel group (parallel/README.md) `cfg` is the rank's narrower model
(`TensorShard.local_config`), the embedding and lm_head hold the rank's vocabulary rows,
and the group adds what Megatron adds: an all-reduce of the embedding, of o's output and
of down's output (row-parallel LoRA deltas ride in the last two), and a gather of the
logits. `full_vocab_size` is the whole model's.

Example:
    model = LlamaModel(cfg, weights, lora_backend="torch", kernel_backend="torch")
    logits = model.forward(pool, batch)  # float32 [len(batch.logits_rows), vocab]
"""

from typing import Protocol

import torch
import torch.nn.functional as F

from ..kernels.attention import paged_attention
from ..kernels.lora import lora_expand, lora_shrink
from ..kernels.rms_norm import rms_norm
from ..kernels.rope_kv import rope_write_kv
from ..kernels.silu_mul import silu_mul
from .config import ModelConfig
from .forward_batch import ForwardBatch
from .linear import project
from .lora_batch import LoraBatch, LoraGroup
from .pool import UnifiedPool
from .rope import rope_tables
from .weights import ModelWeights


class Collectives(Protocol):
    """What the forward asks of a tensor-parallel group (parallel/group.py's TensorGroup);
    a protocol here, so the model knows nothing of processes."""

    def embed(self, table: torch.Tensor, token_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """[T, hidden]: rows of the whole vocabulary's embedding, from each rank's slice."""
        ...

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Σ over ranks of a row-parallel partial output."""
        ...

    def gather_logits(self, local: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """float32 [N, vocab_size] from each rank's vocabulary slice."""
        ...


class LlamaModel:
    def __init__(
        self,
        cfg: ModelConfig,
        weights: ModelWeights,
        lora_backend: str,
        kernel_backend: str,
        tp: Collectives | None = None,
        full_vocab_size: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.tp = tp
        self.vocab_size = full_vocab_size or cfg.vocab_size
        self.weights = weights
        self.lora_backend = lora_backend
        # attention, RMSNorm, RoPE + KV write and SwiGLU: "triton" or their torch references
        self.kernel_backend = kernel_backend
        self.cos, self.sin = rope_tables(
            cfg.rope, cfg.head_dim, cfg.max_position, weights.embed.device
        )
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim
        self.scale = cfg.head_dim**-0.5

    def forward(self, pool: UnifiedPool, batch: ForwardBatch) -> torch.Tensor:
        cfg, w, kernels = self.cfg, self.weights, self.kernel_backend
        num_tokens = batch.token_ids.shape[0]
        hidden = self._embed(batch.token_ids)
        out = None  # the last block's output, added into `hidden` by the next norm
        for index, layer in enumerate(w.layers):
            pool_layer = pool.layer(index)
            x = self._add_norm(hidden, out, layer.input_norm)
            qkv = project(x, layer.qkv, layer.qkv_bias)
            self._lora(qkv, x, pool_layer, batch.lora, "qkv")
            q = rope_write_kv(
                qkv,
                batch.positions,
                self.cos,
                self.sin,
                pool_layer,
                batch.k_pages,
                batch.v_pages,
                cfg.num_heads,
                cfg.num_kv_heads,
                cfg.head_dim,
                backend=kernels,
            )
            attn = paged_attention(
                q,
                pool_layer,
                batch.k_table,
                batch.v_table,
                batch.cu_q,
                batch.ctx_lens,
                self.scale,
                max_q=batch.max_q,
                backend=kernels,
            ).reshape(num_tokens, self.q_size)
            out = project(attn, layer.o)
            self._lora(out, attn, pool_layer, batch.lora, "o")
            out = self._reduce(out, layer.o_bias)
            x = self._add_norm(hidden, out, layer.post_norm)
            gate_up = project(x, layer.gate_up, layer.gate_up_bias)
            self._lora(gate_up, x, pool_layer, batch.lora, "gate_up")
            act = silu_mul(gate_up, backend=kernels)
            out = project(act, layer.down)
            self._lora(out, act, pool_layer, batch.lora, "down")
            out = self._reduce(out, layer.down_bias)
        if out is not None:
            hidden.add_(out)
        last = rms_norm(hidden[batch.logits_rows], w.norm, cfg.rms_norm_eps, backend=kernels)
        logits = F.linear(last, w.lm_head).float()
        return logits if self.tp is None else self.tp.gather_logits(logits, self.vocab_size)

    def _add_norm(
        self, hidden: torch.Tensor, out: torch.Tensor | None, weight: torch.Tensor
    ) -> torch.Tensor:
        """hidden += out (in place; none before the first layer), then RMSNorm of hidden."""
        eps, kernels = self.cfg.rms_norm_eps, self.kernel_backend
        if out is None:
            return rms_norm(hidden, weight, eps, backend=kernels)
        return rms_norm(out, weight, eps, residual=hidden, backend=kernels)

    def _embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        if self.tp is None:
            return self.weights.embed[token_ids]
        return self.tp.embed(self.weights.embed, token_ids, self.vocab_size)

    def _reduce(self, partial: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """A row-parallel output: each rank's partial sum -> the sum, on every rank; then
        its bias, once (added on every rank before the sum it would count N times)."""
        out = partial if self.tp is None else self.tp.all_reduce(partial)
        return out if bias is None else out.add_(bias)

    def _lora(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        pool_layer: torch.Tensor,
        lora: LoraBatch | None,
        group_name: str,
    ) -> None:
        """y [T, Σout] += per-row-adapter x @ Aᵀ @ (scale · B)ᵀ, in place."""
        group: LoraGroup | None = None if lora is None else lora.groups[group_name]
        if group is None:
            return
        h = lora_shrink(
            x.contiguous(),
            pool_layer,
            group.a_pages,
            group.ranks,
            lora.row_slot,
            segments=lora.segments,
            lead_rows=lora.lead_rows,
            backend=self.lora_backend,
            run_lengths=lora.run_lengths,
        )
        lora_expand(
            y,
            h,
            pool_layer,
            group.b_pages,
            group.ranks,
            lora.row_slot,
            group.out_features,
            segments=lora.segments,
            lead_rows=lora.lead_rows,
            backend=self.lora_backend,
            run_lengths=lora.run_lengths,
        )
