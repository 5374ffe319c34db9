"""Token sampling on the device: penalties, greedy / temperature / top-k / top-p / min-p,
per-request seeds, and logprobs.

Order, as vLLM v1: repetition penalty (prompt + output tokens, HF semantics), then
frequency and presence penalties (output tokens, OpenAI semantics), then greedy rows
take the argmax; the others apply temperature, min-p, top-k, top-p and draw with the
exponential race (argmax of p / q, q ~ Exp(1)), q drawn from the row's own generator
when it has a seed, so a seeded request samples the same tokens whatever its batch.
Logprobs are the raw model's (log-softmax of the logits before any penalty or
temperature), as vLLM v1's default.

Example:
    made = SamplingParams.pack(packing, generators, histories, temperature=..., ...)
    out = sample(logits, made(upload.send(packing)))
    out.tokens  # int64 [N] on the logits' device
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .upload import Packing, Uploaded

MAX_TOP_LOGPROBS = 20


@dataclass
class TokenHistory:
    """What penalties look at for one row: every token so far, the first num_prompt of
    which are the prompt."""

    tokens: np.ndarray  # int [n]
    num_prompt: int


@dataclass
class PenaltyTokens:
    """The rows' histories, flattened: token j of all is row rows[j]'s."""

    rows: torch.Tensor  # int64 [H]
    tokens: torch.Tensor  # int64 [H]
    is_output: torch.Tensor  # bool [H]: past the row's prompt


@dataclass
class SamplingParams:
    """One row per sampling sequence; tensors on the logits' device."""

    temperature: torch.Tensor  # f32 [N], 0 = greedy
    top_p: torch.Tensor  # f32 [N], 1 = off
    top_k: torch.Tensor  # int64 [N], 0 = off
    min_p: torch.Tensor  # f32 [N], 0 = off
    presence_penalty: torch.Tensor  # f32 [N]
    frequency_penalty: torch.Tensor  # f32 [N]
    repetition_penalty: torch.Tensor  # f32 [N], 1 = off
    generators: list[torch.Generator | None]  # [N], None = the default generator
    num_logprobs: np.ndarray  # int [N]: -1 none, 0 the sampled token's, n also the top n
    logprobs_asked: torch.Tensor  # bool [N]: num_logprobs >= 0
    history: PenaltyTokens | None  # only when some row is penalized
    # decided on the host, so that choosing a path costs no device sync
    any_random: bool  # some row has temperature > 0
    any_repetition: bool  # some row has repetition_penalty != 1
    any_penalty: bool  # some row has any penalty

    @staticmethod
    def pack(
        packing: Packing,
        generators: list,
        histories: list[TokenHistory],
        **arrays: np.ndarray,
    ) -> Callable[[Uploaded], "SamplingParams"]:
        """The rows' parameters (and, when some row is penalized, its `histories`, one
        per row) into `packing`; the result makes the params from the upload."""
        slots = {
            name: packing.add(np.ascontiguousarray(arrays[name], np.float32))
            for name in ("temperature", "top_p", "min_p", "presence_penalty",
                         "frequency_penalty", "repetition_penalty")
        }  # fmt: skip
        slots["top_k"] = packing.add(arrays["top_k"].astype(np.int64))
        num_logprobs = np.asarray(arrays["logprobs"])
        asked = packing.add(num_logprobs >= 0)
        penalized = any_penalty(
            arrays["presence_penalty"], arrays["frequency_penalty"], arrays["repetition_penalty"]
        )
        history = None
        if penalized:
            lengths = [len(h.tokens) for h in histories]
            history = (
                packing.add(np.repeat(np.arange(len(histories), dtype=np.int64), lengths)),
                packing.add(np.concatenate([h.tokens for h in histories]).astype(np.int64)),
                packing.add(
                    np.concatenate([np.arange(len(h.tokens)) >= h.num_prompt for h in histories])
                ),
            )

        def made(sent: Uploaded) -> SamplingParams:
            return SamplingParams(
                **{name: sent[slot] for name, slot in slots.items()},
                generators=generators,
                num_logprobs=num_logprobs,
                logprobs_asked=sent[asked],
                history=None if history is None else PenaltyTokens(*(sent[s] for s in history)),
                any_random=bool((arrays["temperature"] > 0).any()),
                any_repetition=bool((arrays["repetition_penalty"] != 1).any()),
                any_penalty=penalized,
            )

        return made


def any_penalty(presence: np.ndarray, frequency: np.ndarray, repetition: np.ndarray) -> bool:
    """Whether some row is penalized (its sampling reads the sequence's token history)."""
    return bool((repetition != 1).any() or (presence != 0).any() or (frequency != 0).any())


@dataclass
class SampleOutput:
    tokens: torch.Tensor  # int64 [N]
    logprobs: torch.Tensor  # f32 [N], NaN where not asked
    top_ids: torch.Tensor  # int64 [N, n_max]
    top_logprobs: torch.Tensor  # f32 [N, n_max]; row i's first num_logprobs[i] count


def sample(logits: torch.Tensor, params: SamplingParams) -> SampleOutput:
    """logits float32 [N, V]."""
    raw_logprobs = torch.log_softmax(logits, dim=-1) if (params.num_logprobs >= 0).any() else None
    logits = apply_penalties(logits, params)
    greedy = logits.argmax(dim=-1)
    if params.any_random:
        drawn = _draw(_filtered_probs(logits, params), params.generators)
        tokens = torch.where(params.temperature > 0, drawn, greedy)
    else:
        tokens = greedy
    return _with_logprobs(tokens, raw_logprobs, params)


def apply_penalties(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    rep, pres, freq = params.repetition_penalty, params.presence_penalty, params.frequency_penalty
    if not params.any_penalty:
        return logits
    n, vocab = logits.shape
    device = logits.device
    history = params.history
    flat = history.rows * vocab + history.tokens
    logits = logits.clone()
    if params.any_repetition:
        seen = torch.zeros(n * vocab, dtype=torch.bool, device=device)
        seen.index_fill_(0, flat, True)  # no host scalar to copy up
        seen = seen.view(n, vocab)
        penalized = torch.where(logits > 0, logits / rep[:, None], logits * rep[:, None])
        logits = torch.where(seen, penalized, logits)
    out_flat = flat[history.is_output]
    counts = torch.zeros(n * vocab, dtype=torch.float32, device=device)
    counts.scatter_add_(0, out_flat, torch.ones_like(out_flat, dtype=torch.float32))
    counts = counts.view(n, vocab)
    return logits - freq[:, None] * counts - pres[:, None] * (counts > 0).float()


def _filtered_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Softmax after temperature, then min-p, top-k and top-p masks; float32 [N, V]."""
    temperature = torch.where(params.temperature > 0, params.temperature, 1.0)
    logits = logits / temperature[:, None]
    probs = logits.softmax(dim=-1)
    min_p = params.min_p[:, None] * probs.max(dim=-1, keepdim=True).values
    logits = logits.masked_fill(probs < min_p, float("-inf"))
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    rank = torch.arange(logits.shape[-1], device=logits.device)[None, :]
    top_k = torch.where(params.top_k > 0, params.top_k, logits.shape[-1])
    sorted_logits = sorted_logits.masked_fill(rank >= top_k[:, None], float("-inf"))
    sorted_probs = sorted_logits.softmax(dim=-1)
    # A token stays while the mass before it is below top_p, so the first always stays.
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= params.top_p[:, None], 0.0)
    return torch.zeros_like(sorted_probs).scatter_(-1, order, sorted_probs)


def _draw(probs: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    noise = torch.empty_like(probs).exponential_()
    for row, generator in enumerate(generators):
        if generator is not None:
            noise[row].exponential_(generator=generator)
    return (probs / noise).argmax(dim=-1)


def _with_logprobs(
    tokens: torch.Tensor, raw_logprobs: torch.Tensor | None, params: SamplingParams
) -> SampleOutput:
    n = tokens.shape[0]
    device = tokens.device
    top_n = int(params.num_logprobs.max(initial=0))
    if raw_logprobs is None:
        nan = torch.full((n,), float("nan"), device=device)
        empty = torch.zeros((n, 0), device=device)
        return SampleOutput(tokens, nan, empty.long(), empty)
    chosen = raw_logprobs.gather(1, tokens[:, None])[:, 0]
    top = raw_logprobs.topk(top_n, dim=-1)
    logprobs = torch.where(params.logprobs_asked, chosen, float("nan"))
    return SampleOutput(tokens, logprobs, top.indices, top.values)
