"""The executor on CUDA: bf16 forward with the Triton kernels against HF + PEFT, CUDA-graph
decode and mixed steps against eager, the side-stream adapter load, pool sizing from
gpu_memory_utilization, a cached prefix against computing it (bf16 within tolerance), one
pinned upload per step (counted in the profiler's trace).
Skipped (visibly) without a CUDA device."""

import json
import os

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture
from test_executor import CASES, prefix_executor, reuse_outcome
from test_model_vs_hf import assert_near_hf

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.model.lora_batch import GROUPS
from lorafleet_executor.model.upload import Packing, StepUpload
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTERS = ["tiny-r4", "tiny-r8", "tiny-r16", "tiny-r64", "tiny-r16-rslora", "tiny-mix-09"]


def cuda_executor(**overrides) -> Executor:
    require_fixture(TINY)
    config = dict(model_path=str(TINY), device="cuda", num_pages=6000, max_num_seqs=16,
                  max_num_batched_tokens=128, max_lora_rank=64)  # fmt: skip
    return Executor(InitConfig(**{**config, **overrides}))


def mixed_requests(vocab: int, max_new_tokens: int = 32) -> list[Request]:
    rng = np.random.default_rng(7)
    adapter_ids = [10 + i for i in range(len(ADAPTERS))] + [-1, -1, 10, 13]
    return [
        Request(prompt=rng.integers(3, vocab, size=int(rng.integers(3, 40))).tolist(),
                adapter_id=a, max_new_tokens=max_new_tokens, logprobs=5)
        for a in adapter_ids
    ]  # fmt: skip


def run(executor: Executor, requests, chunk_size=16):
    driver = Driver(executor, chunk_size=chunk_size)
    for i, name in enumerate(ADAPTERS):
        driver.add_adapter(10 + i, str(ROOT / "adapters" / name))
    return driver.generate(requests)


def hf_reference():
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(
        base, ROOT / "adapters" / ADAPTERS[0], adapter_name=ADAPTERS[0]
    )
    for name in ADAPTERS[1:]:
        model.load_adapter(ROOT / "adapters" / name, adapter_name=name)
    return model.eval()


def test_bf16_triton_with_cuda_graphs_matches_hf_peft():
    executor = cuda_executor(dtype="bfloat16", cuda_graphs=True)
    assert executor.decode_graphs is not None and executor.mixed_graphs is not None
    requests = mixed_requests(executor.cfg.vocab_size)
    outputs = run(executor, requests)
    model = hf_reference()
    names = {10 + i: n for i, n in enumerate(ADAPTERS)}
    # bf16 may flip near-ties: our token must be within bf16 noise of HF's best
    assert_near_hf(model, requests, outputs, names, tie_margin=0.15, max_diff=0.1)


@pytest.mark.parametrize("lora_backend", ["triton", "torch"], ids=["ours", "bmm"])
def test_cuda_graphs_equal_eager_in_fp32(lora_backend):
    requests = mixed_requests(512, max_new_tokens=20)
    # one context past the first context bucket (256): its graphs are captured on first use
    requests.append(Request(prompt=list(range(3, 283)), adapter_id=11, max_new_tokens=20))
    # chunks of 100 (past the 64-row pieces) fill steps of up to 256 tokens
    config = {"dtype": "float32", "max_num_batched_tokens": 256, "lora_backend": lora_backend}
    eager = run(cuda_executor(cuda_graphs=False, **config), requests, chunk_size=100)
    graphed_executor = cuda_executor(cuda_graphs=True, **config)
    graphed = run(graphed_executor, requests, chunk_size=100)
    # a base-model prefill: no LoRA group, its graph captured on first use
    base_only = [Request(prompt=list(range(3, 120)), max_new_tokens=4)]
    eager += run(cuda_executor(cuda_graphs=False, **config), base_only, chunk_size=100)
    graphed += run(graphed_executor, base_only, chunk_size=100)
    for a, b in zip(eager, graphed, strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
    decode, mixed = graphed_executor.decode_graphs, graphed_executor.mixed_graphs
    assert decode.buckets == [1, 2, 4, 8, 16]
    assert decode.context_buckets == [256, 1024]
    assert any(context == 1024 for _, context, _ in decode.graphs)
    # the base-model request's decode steps: a graph without the LoRA kernels
    assert any(not with_lora for _, _, with_lora in decode.graphs)
    if lora_backend == "torch":  # the bmm baseline runs mixed steps eagerly
        assert mixed is None
        return
    assert mixed.buckets == [128, 192, 256]
    # captured at start for every LoRA group; other groups on first use
    assert {(b, frozenset(GROUPS)) for b in mixed.buckets} | {(128, frozenset())} == set(
        mixed.graphs
    )


def test_side_stream_load_lands_before_ack():
    executor = cuda_executor(cuda_graphs=False)
    staged = executor.stage_adapter(1, str(ROOT / "adapters" / "tiny-r64"))
    host = executor.host.get(1).rows
    assert host.is_pinned()
    pages = np.random.default_rng(0).permutation(6000)[: staged.num_pages].astype(np.int32)
    executor.load_adapter(1, pages)
    assert torch.equal(executor.pool.data[:, torch.from_numpy(pages).long().cuda()].cpu(), host)


def test_gpu_memory_utilization_sizes_the_pool_within_budget():
    total = torch.cuda.mem_get_info()[1]
    executor = cuda_executor(num_pages=0, gpu_memory_utilization=0.25, cuda_graphs=False)
    assert executor.pool.num_pages > 1000
    used = torch.cuda.memory_reserved()
    print(
        f"pool {executor.pool.num_pages} pages, "
        f"reserved {used / 2**30:.2f} GiB of {total / 2**30:.1f}"
    )
    assert used <= 0.25 * total
    assert executor.pool.nbytes > 0.5 * 0.25 * total


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_steps_launched_before_the_last_is_read_equal_steps_one_by_one_on_cuda(cuda_graphs):
    # On the GPU the late tokens are gathered on the device and the samples come back
    # by copies queued behind the step (test_executor.py has the CPU twin).
    from test_executor import decode_plans, histories

    one_by_one = cuda_executor(dtype="float32", cuda_graphs=cuda_graphs)
    ahead = cuda_executor(dtype="float32", cuda_graphs=cuda_graphs)
    expected = [one_by_one.step(p).tokens.tolist() for p in decode_plans(8)]
    launched, results = None, []
    for p in decode_plans(8):
        step = ahead.launch(p)
        if launched is not None:
            results.append(launched.wait().tokens.tolist())
        launched = step
    results.append(launched.wait().tokens.tolist())
    assert results == expected
    assert histories(ahead) == histories(one_by_one)


def test_grammar_rows_under_cuda_graphs_equal_eager_and_free_rows_are_untouched():
    """The mask goes on the graph's logits outside the graph, in one Triton launch: with
    graphs on or off, constrained rows sample the same tokens (fp32), every constrained
    answer parses, and the free rows equal a run without any grammar."""
    import json
    import threading

    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "maximum": 999},
            "s": {"type": "string", "maxLength": 5},
        },
        "required": ["n", "s"],
        "additionalProperties": False,
    }

    def outputs(graphs: bool, grammar: bool):
        executor = cuda_executor(dtype="float32", cuda_graphs=graphs)
        done = threading.Event()
        executor.compile_grammar(1, "json_schema", json.dumps(schema), lambda *_: done.set())
        assert done.wait(60)
        requests = mixed_requests(executor.cfg.vocab_size, max_new_tokens=48)
        for i in range(0, len(requests), 2):
            requests[i].grammar_id = 1 if grammar else -1
        return requests, run(executor, requests)

    requests, graphed = outputs(graphs=True, grammar=True)
    _, eager = outputs(graphs=False, grammar=True)
    _, free = outputs(graphs=True, grammar=False)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    for i, (request, a, b) in enumerate(zip(requests, graphed, eager, strict=True)):
        assert a.tokens == b.tokens
        if request.grammar_id >= 0:
            assert set(json.loads(tokenizer.decode(a.tokens[:-1]))) == {"n", "s"}
        else:
            assert a.tokens == free[i].tokens


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_cached_prefix_yields_what_computing_it_yields_on_cuda(dtype):
    # Triton kernels and CUDA graphs (decode and mixed steps read the page tables the
    # prefix fills). fp32: the same greedy tokens. bf16: the KV of a prefix computed in
    # another batch differs by bf16 rounding, so logprobs within 0.1 (the tolerance
    # against HF above) and at least 90% of the greedy samples the same (each step is fed
    # the same token, so one near-tie flips one sample).
    executor = prefix_executor(device="cuda", dtype=dtype, lora_backend="triton", cuda_graphs=True)
    assert executor.decode_graphs is not None and executor.mixed_graphs is not None
    worst, agree, total = 0.0, 0, 0
    for case in CASES:
        reader, alone = reuse_outcome(executor, *case, steps=16)
        worst = max(worst, *(abs(a[1] - b[1]) for a, b in zip(reader, alone, strict=True)))
        agree += sum(a[0] == b[0] for a, b in zip(reader, alone, strict=True))
        total += len(alone)
        if dtype == "float32":
            assert [t for t, _ in reader] == [t for t, _ in alone], case
    print(f"{dtype} cached prefix vs computed: max |logprob diff| {worst:.4f}, {agree}/{total}")
    assert worst < (1e-4 if dtype == "float32" else 0.1)
    assert agree >= 0.9 * total


def host_to_device_copies(executor: Executor, requests, tmp_path) -> tuple[list, list[str], int]:
    """(outputs, the HtoD copies the device ran, steps with sequences) of a run profiled
    after its adapters are loaded."""
    driver = Driver(executor, chunk_size=16)
    for i, name in enumerate(ADAPTERS):
        driver.add_adapter(10 + i, str(ROOT / "adapters" / name))
    launch, steps = executor.launch, []
    executor.launch = lambda plan: (steps.append(plan.num_seqs > 0), launch(plan))[1]
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        outputs = driver.generate(requests)
        torch.cuda.synchronize()
    trace = tmp_path / "trace.json"
    profile.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    copies = [e["name"] for e in events if e.get("cat") == "gpu_memcpy" and "HtoD" in e["name"]]
    return outputs, copies, sum(steps)


@pytest.mark.parametrize("cuda_graphs", [False, True], ids=["eager", "graphs"])
def test_one_pinned_upload_per_step_and_outputs_equal_the_cpu_path(cuda_graphs, tmp_path):
    """Eager, decode-graph and mixed-graph steps take their inputs from one copy out of
    pinned memory, and compute what the CPU's torch reference computes (fp32)."""
    requests = mixed_requests(512, max_new_tokens=12)
    config = dict(model_path=str(TINY), num_pages=6000, max_num_seqs=16,
                  max_num_batched_tokens=128, max_lora_rank=64)  # fmt: skip
    expected = run(Executor(InitConfig(**config, device="cpu")), requests)
    executor = cuda_executor(dtype="float32", cuda_graphs=cuda_graphs)
    outputs, copies, steps = host_to_device_copies(executor, requests, tmp_path)
    for a, b in zip(expected, outputs, strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-3)
    assert steps > 12
    assert len(copies) == steps, copies
    assert all("Pinned" in name for name in copies), copies
    assert executor.upload.copies == steps
    assert all(host.is_pinned() for host in executor.upload._hosts if host.numel())


def test_step_upload_host_buffers_are_pinned_and_views_land_on_the_device():
    upload = StepUpload(torch.device("cuda"))
    packing = Packing()
    ids = packing.add(np.arange(5, dtype=np.int64))
    flags = packing.add(np.array([True, False]), size=4, pad=True)
    sent = upload.send(packing)
    assert upload.pinned and upload._hosts[0].is_pinned()
    assert sent[ids].is_cuda and sent[ids].tolist() == [0, 1, 2, 3, 4]
    assert sent[flags].tolist() == [True, False, True, True]
