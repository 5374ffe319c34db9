"""Our paged forward + heterogeneous LoRA against HF transformers + PEFT, in fp32 on CPU.

One batch mixes adapters of ranks 4..64 (one rsLoRA) with base-only rows, prefills in
chunks (so later chunks attend to cached pages), then decodes 32+ tokens. HF's logits
come from one teacher-forced forward over prompt + our tokens per request: our greedy
token must be HF's argmax at every step, and our logprobs must match HF's log-softmax.
"""

import os
from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
MIXED_ADAPTERS = ["tiny-r4", "tiny-r8", "tiny-r16", "tiny-r64", "tiny-r16-rslora", "tiny-mix-09"]
NUM_NEW = 34
TOP_N = 5


def nan_filled(executor: Executor) -> Executor:
    # Pages nobody wrote are NaN, so any read of a wrong page poisons the logits.
    executor.pool.data.fill_(float("nan"))
    return executor


def hf_model(model_dir, adapter_dirs: dict[str, str]):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base.eval()
    if not adapter_dirs:
        return base
    names = list(adapter_dirs)
    model = peft.PeftModel.from_pretrained(base, adapter_dirs[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(adapter_dirs[name], adapter_name=name)
    model.eval()
    return model


def hf_logprobs(model, prompt: list[int], generated: list[int], adapter: str | None):
    """log-softmax [len(generated), V] at each position where a generated token was chosen."""
    ids = torch.tensor([prompt + generated[:-1]])
    with torch.no_grad():
        if adapter is None:
            ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
            with ctx:
                logits = model(input_ids=ids).logits[0]
        else:
            model.set_adapter(adapter)
            logits = model(input_ids=ids).logits[0]
    return torch.log_softmax(logits.float(), -1)[len(prompt) - 1 :]


def assert_matches_hf(model, requests, outputs, adapter_names, atol):
    for request, out in zip(requests, outputs, strict=True):
        name = adapter_names.get(request.adapter_id)
        ref = hf_logprobs(model, request.prompt, out.tokens, name)
        assert len(out.tokens) == request.max_new_tokens
        for step, token in enumerate(out.tokens):
            assert token == int(ref[step].argmax()), (
                f"adapter {name}: step {step} token {token}, HF argmax {int(ref[step].argmax())}"
            )
            assert out.logprobs[step] == pytest.approx(float(ref[step, token]), abs=atol)
            top = ref[step].topk(TOP_N)
            assert list(out.top[step]) == top.indices.tolist()
            np.testing.assert_allclose(list(out.top[step].values()), top.values, atol=atol)


def assert_near_hf(model, requests, outputs, adapter_names, tie_margin, max_diff):
    """Half-precision activations against float32: our token within `tie_margin` of HF's
    best logprob at every step (near-ties may flip), 90% exactly its argmax, logprobs
    within `max_diff`."""
    worst, agree, total = 0.0, 0, 0
    for request, out in zip(requests, outputs, strict=True):
        ref = hf_logprobs(model, request.prompt, out.tokens, adapter_names.get(request.adapter_id))
        chosen = ref.gather(1, torch.tensor(out.tokens)[:, None])[:, 0]
        assert bool((ref.max(-1).values - chosen < tie_margin).all())
        worst = max(worst, float((torch.tensor(out.logprobs) - chosen).abs().max()))
        agree += int((ref.argmax(-1) == torch.tensor(out.tokens)).sum())
        total += len(out.tokens)
    print(f"vs HF fp32: max |logprob diff| {worst:.4f}, argmax agreement {agree}/{total}")
    assert worst < max_diff
    assert agree >= 0.9 * total


@pytest.fixture(scope="module")
def mixed_run():
    require_fixture(TINY)
    for name in MIXED_ADAPTERS:
        require_fixture(ROOT / "adapters" / name)
    executor = nan_filled(
        Executor(InitConfig(model_path=str(TINY), num_pages=6000, max_num_batched_tokens=96))
    )
    driver = Driver(executor, chunk_size=16)
    for i, name in enumerate(MIXED_ADAPTERS):
        driver.add_adapter(10 + i, str(ROOT / "adapters" / name))
    rng = np.random.default_rng(7)
    vocab = executor.cfg.vocab_size
    adapter_ids = [10 + i for i in range(len(MIXED_ADAPTERS))] + [-1, -1, 10, 13]
    requests = [
        Request(
            prompt=rng.integers(3, vocab, size=int(rng.integers(3, 40))).tolist(),
            adapter_id=a,
            max_new_tokens=NUM_NEW,
            logprobs=TOP_N,
        )
        for a in adapter_ids
    ]
    outputs = driver.generate(requests)
    names = {10 + i: name for i, name in enumerate(MIXED_ADAPTERS)}
    dirs = {name: str(ROOT / "adapters" / name) for name in MIXED_ADAPTERS}
    return requests, outputs, names, dirs, driver


def test_mixed_adapters_and_base_rows_match_hf_peft(mixed_run):
    requests, outputs, names, dirs, driver = mixed_run
    assert len(driver.results) > NUM_NEW  # chunked prefill took several steps
    model = hf_model(TINY, dirs)
    assert_matches_hf(model, requests, outputs, names, atol=2e-4)


def test_explicit_decode_tokens_equal_use_last_sampled(mixed_run):
    requests, outputs, _, dirs, _ = mixed_run
    executor = Executor(InitConfig(model_path=str(TINY), num_pages=6000, max_num_batched_tokens=64))
    driver = Driver(executor, chunk_size=7, use_last_sampled=False, page_seed=3)
    for i, name in enumerate(dirs):
        driver.add_adapter(10 + i, dirs[name])
    # a 12-token prefix of the same greedy generations is enough to tell the paths apart
    again = driver.generate([replace(r, max_new_tokens=12) for r in requests])
    for first, second in zip(outputs, again, strict=True):
        assert first.tokens[:12] == second.tokens
        np.testing.assert_allclose(first.logprobs[:12], second.logprobs, atol=1e-5)


SMOLLM = ROOT / "smollm2-135m-instruct"


def test_smollm2_with_adapter_matches_hf():
    require_fixture(SMOLLM)
    require_fixture(ROOT / "adapters" / "smollm2-r8")
    executor = Executor(
        InitConfig(model_path=str(SMOLLM), num_pages=4000, max_num_batched_tokens=64)
    )
    driver = Driver(executor, chunk_size=32)
    driver.add_adapter(1, str(ROOT / "adapters" / "smollm2-r8"))
    prompt = [1, 9690, 198, 2683, 359, 253, 5356, 11173, 30, 2, 198, 1, 4093, 198, 19556, 17]
    requests = [
        Request(prompt=prompt, adapter_id=1, max_new_tokens=32, logprobs=TOP_N),
        Request(prompt=prompt[:9], adapter_id=-1, max_new_tokens=32, logprobs=TOP_N),
    ]
    outputs = driver.generate(requests)
    model = hf_model(SMOLLM, {"smollm2-r8": str(ROOT / "adapters" / "smollm2-r8")})
    assert_matches_hf(model, requests, outputs, {1: "smollm2-r8"}, atol=1e-3)


def test_rank_128_rslora_adapter_made_by_peft_matches_hf(tmp_path):
    require_fixture(TINY)
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32)
    config = peft.LoraConfig(r=128, lora_alpha=64, use_rslora=True, target_modules="all-linear")
    model = peft.get_peft_model(base, config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)  # PEFT starts B at zero, which would test nothing
    model.save_pretrained(tmp_path)
    executor = Executor(InitConfig(model_path=str(TINY), num_pages=8000, max_lora_rank=128))
    driver = Driver(executor, chunk_size=16)
    driver.add_adapter(1, str(tmp_path))
    requests = [Request(prompt=list(range(5, 30)), adapter_id=1, max_new_tokens=8, logprobs=TOP_N)]
    outputs = driver.generate(requests)
    model.eval()
    assert_matches_hf(model, requests, outputs, {1: "default"}, atol=2e-4)
