"""What FP8 costs in quality on the real default model, SmolLM2-135M-Instruct: next-token
distributions at every position of a fixed set of texts, FP8 (weights quantized per
channel at load, activations per token) against the dense model, as top-1 agreement and
mean KL(dense || FP8). On CPU the FP8 model is the reference path (e4m3 rounding of the
weights and of every projection's input, simulated by quantize-dequantize in float32);
on the GPU (marked `gpu`) the FP8 tensor cores against bf16. The README's "FP8" section
quotes these figures."""

import os

import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.forward_batch import ForwardBatch
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor

SMOLLM = fixtures_root(os.environ) / "smollm2-135m-instruct"

TEXTS = [
    "The capital of France is Paris, a city known for its museums, its cafés and the river "
    "Seine that runs through its centre.",
    "To make a cup of tea, boil fresh water, pour it over the leaves and let it steep for "
    "three to five minutes before you drink it.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + "
    "fibonacci(n - 2)\n",
    "Photosynthesis converts light energy into chemical energy: plants take in carbon "
    "dioxide and water and release oxygen.",
    "<|im_start|>user\nWhat is the largest planet in our solar system?<|im_end|>\n"
    "<|im_start|>assistant\nThe largest planet in our solar system is Jupiter.",
    "In 1969 Neil Armstrong and Buzz Aldrin walked on the Moon while Michael Collins "
    "orbited above them in the command module.",
    "SELECT name, COUNT(*) AS orders FROM customers JOIN orders ON customers.id = "
    "orders.customer_id GROUP BY name ORDER BY orders DESC;",
    "The mitochondria is often called the powerhouse of the cell because it produces most "
    "of the energy the cell needs.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who "
    "talked to the gulls every morning.",
    "Interest compounds: 1,000 dollars at 5 percent a year grows to about 1,629 dollars "
    "after ten years.",
]

# Measured on CPU over the 284 positions: top-1 agreement 0.905 (0.980 where the dense
# model's top token has p >= 0.5), mean KL 0.043 nats (median 0.028); the weights alone
# account for 0.026 of it. A 135M model feels FP8 more than a 7B one: its weights come
# from a 4-bit GGUF and its activations have outliers. The thresholds leave room for
# another torch's float32 summation order, not for a bug.
MIN_TOP1_AGREEMENT = 0.87
MIN_CONFIDENT_AGREEMENT = 0.95
MAX_MEAN_KL = 0.06


def token_ids() -> list[list[int]]:
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(SMOLLM / "tokenizer.json"))
    return [tokenizer.encode(text).ids for text in TEXTS]


def next_token_logprobs(executor: Executor, ids: list[int]) -> torch.Tensor:
    """float32 [len(ids), vocab]: the log-distribution after each prefix, one prefill."""
    device, n = executor.device, len(ids)
    pages = torch.arange(n, dtype=torch.int32, device=device)
    batch = ForwardBatch(
        token_ids=torch.tensor(ids, device=device),
        positions=torch.arange(n, device=device),
        k_pages=2 * pages,
        v_pages=2 * pages + 1,
        k_table=(2 * pages)[None],
        v_table=(2 * pages + 1)[None],
        cu_q=torch.tensor([0, n], dtype=torch.int32, device=device),
        ctx_lens=torch.tensor([n], dtype=torch.int32, device=device),
        max_q=n,
        logits_rows=torch.arange(n, device=device),
        lora=None,
    )
    with torch.no_grad():
        return torch.log_softmax(executor.model.forward(executor.pool, batch).float(), -1).cpu()


def quality(dense: Executor, fp8: Executor) -> dict:
    """Top-1 agreement (over all positions, and where the dense model's top token has
    p >= 0.5), mean KL(dense || fp8) in nats, and the positions counted."""
    agree, confident, confident_agree, kl, positions = 0, 0, 0, 0.0, 0
    for ids in token_ids():
        p, q = next_token_logprobs(dense, ids), next_token_logprobs(fp8, ids)
        same = p.argmax(-1) == q.argmax(-1)
        sure = p.exp().max(-1).values >= 0.5
        agree += int(same.sum())
        confident += int(sure.sum())
        confident_agree += int((same & sure).sum())
        kl += float((p.exp() * (p - q)).sum())
        positions += len(ids)
    return {
        "top1_agreement": agree / positions,
        "confident_agreement": confident_agree / confident,
        "mean_kl": kl / positions,
        "positions": positions,
    }


def assert_quality(measured: dict, label: str) -> None:
    print(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in measured.items()))
    assert measured["positions"] > 250
    assert measured["top1_agreement"] >= MIN_TOP1_AGREEMENT
    assert measured["confident_agreement"] >= MIN_CONFIDENT_AGREEMENT
    assert measured["mean_kl"] <= MAX_MEAN_KL
    assert measured["mean_kl"] > 1e-4  # FP8 did change the model: this measures something


def executors(**fields) -> tuple[Executor, Executor]:
    require_fixture(SMOLLM)
    config = dict(model_path=str(SMOLLM), num_pages=256, max_num_batched_tokens=128, **fields)
    return Executor(InitConfig(**config)), Executor(InitConfig(**config, quantization="fp8"))


def test_fp8_keeps_smollm2s_next_token_distributions():
    dense, fp8 = executors()
    assert_quality(quality(dense, fp8), "FP8 vs dense on CPU")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("gemm", ["scaled_mm", "triton"])
def test_fp8_tensor_cores_keep_smollm2s_next_token_distributions(gemm, monkeypatch):
    """bf16 against FP8 on the GPU: the same thresholds as the CPU simulation."""
    from lorafleet_executor.runtime import init_config

    monkeypatch.setattr(init_config, "CUDA_FP8_GEMM", gemm)
    dense, fp8 = executors(device="cuda", dtype="bfloat16", cuda_graphs=False)
    # SmolLM2's widths (576, 960, 1536, 3072) are multiples of 16: scaled_mm takes them
    assert fp8.model.weights.layers[0].qkv.gemm == gemm
    assert_quality(quality(dense, fp8), f"FP8 ({gemm}) vs bf16 on CUDA")
