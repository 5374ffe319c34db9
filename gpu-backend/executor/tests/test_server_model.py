"""The protocol server with the real Executor and the tiny fixture model: init, adapter
staging and loading, steps, stats, errors from the executor, shutdown."""

import os
from dataclasses import replace

import numpy as np
import pytest
from test_server import EngineEnd

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.protocol.messages import (
    FLAG_NEW,
    FLAG_SAMPLE,
    FLAG_USE_LAST_SAMPLED,
    CompileGrammar,
    DropAdapter,
    DropGrammar,
    InitConfig,
    LoadAdapter,
    StageAdapter,
    StepPlan,
)
from lorafleet_executor.runtime.executor import Executor
from lorafleet_executor.runtime.server import EXIT_OK

FIXTURES = fixtures_root(os.environ)
TINY = FIXTURES / "tiny-llama"
ADAPTER = FIXTURES / "adapters" / "tiny-r8"

pytestmark = pytest.mark.skipif(
    not (TINY / "config.json").exists() or not ADAPTER.exists(),
    reason=f"tiny fixture model missing under {FIXTURES} (npm run setup makes it)",
)


def one_seq_plan(
    step_id: int,
    adapter_id: int,
    kv_pages: np.ndarray,
    tokens: tuple[int, ...] = (5, 17, 42, 9),
    seq_id: int | None = None,
    free: tuple[int, ...] = (),
) -> StepPlan:
    """A new seq (id `seq_id`, default the step's) prefilling `tokens`, sampled greedily."""
    tokens = np.array(tokens, np.int32)
    one = lambda dtype, value: np.array([value], dtype)  # noqa: E731
    return StepPlan(
        step_id=step_id,
        free_seq_ids=np.array(free, np.uint32),
        seq_ids=one(np.uint32, step_id if seq_id is None else seq_id),
        flags=one(np.uint8, FLAG_SAMPLE | FLAG_NEW),
        num_new_tokens=one(np.int32, len(tokens)),
        num_cached=one(np.int32, 0),
        num_prompt=one(np.int32, len(tokens)),
        adapter_ids=one(np.int32, adapter_id),
        temperature=one(np.float32, 0.0),
        top_p=one(np.float32, 1.0),
        top_k=one(np.int32, 0),
        min_p=one(np.float32, 0.0),
        presence_penalty=one(np.float32, 0.0),
        frequency_penalty=one(np.float32, 0.0),
        repetition_penalty=one(np.float32, 1.0),
        seed=one(np.int64, -1),
        logprobs=one(np.int32, 2),
        token_ids=tokens,
        kv_pages=kv_pages.astype(np.int32),
        grammar_ids=one(np.int32, -1),
    )


def prompt_then_decode_plans() -> tuple[StepPlan, StepPlan]:
    """Step 1: a 4-token prompt, sampled; step 2: one token from its last sample."""
    first = one_seq_plan(1, -1, np.arange(8, dtype=np.int32))
    flags = np.array([FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED], np.uint8)
    second = replace(first, step_id=2, flags=flags, num_new_tokens=np.array([1], np.int32),
                     num_cached=np.array([4], np.int32), token_ids=np.array([-1], np.int32),
                     kv_pages=np.array([8, 9], np.int32))  # fmt: skip
    return first, second


def test_init_adapter_step_stats_shutdown(tmp_path):
    engine = EngineEnd(tmp_path, timeout=120)
    try:
        config = InitConfig(
            model_path=str(TINY),
            dtype="float32",
            device="cpu",
            num_pages=512,
            max_lora_rank=16,
            max_num_seqs=8,
            max_num_batched_tokens=64,
            host_cache_bytes=64 << 20,
            lora_backend="torch",
            cuda_graphs=False,
        )
        engine.send(1, "init", config)
        ready = engine.receive()
        assert (ready.request_id, ready.name) == (1, "ready"), ready
        assert ready.body["num_pages"] == 512 and ready.body["device"] == "cpu"

        engine.send(2, "stage_adapter", StageAdapter(3, str(ADAPTER)))
        staged = engine.receive()
        assert (staged.request_id, staged.name) == (2, "adapter_staged"), staged
        assert staged.body.rank == 8 and staged.body.num_pages > 0
        adapter_pages = np.arange(staged.body.num_pages, dtype=np.int32)[::-1].copy()
        free = np.arange(staged.body.num_pages, 512, dtype=np.int32)

        # The load and the steps after it are sent at once; each is answered by id.
        engine.send(3, "load_adapter", LoadAdapter(3, adapter_pages))
        engine.send(4, "step", one_seq_plan(4, -1, free[:8]))
        engine.send(5, "step", one_seq_plan(5, 99, free[8:16]))  # 99 was never loaded
        engine.send(6, "step", one_seq_plan(6, 3, free[16:24]))
        replies = {m.request_id: m for m in (engine.receive() for _ in range(4))}
        assert replies[3].name == "ok"
        assert replies[4].name == "step_result" and replies[4].body.step_id == 4
        assert replies[4].body.seq_ids.tolist() == [4]
        assert replies[4].body.top_counts.tolist() == [2]
        assert replies[5].name == "error" and replies[5].body.request_id == 5
        assert "99" in replies[5].body.message
        assert replies[6].name == "step_result" and len(replies[6].body.tokens) == 1

        engine.send(7, "stats")
        stats = engine.receive()
        assert stats.name == "stats_result"
        assert stats.body["pool_adapters"] == 1 and stats.body["live_seqs"] == 2

        engine.send(8, "drop_adapter", DropAdapter(3, "host"))
        assert engine.receive().name == "ok"
        engine.send(9, "drop_adapter", DropAdapter(3, "host"))
        gone = engine.receive()
        assert (gone.name, gone.body.code) == ("error", "unknown_adapter")

        engine.send(10, "shutdown")
        assert engine.receive().name == "ok"
        assert engine.exit_code() == EXIT_OK
    finally:
        engine.close()


def test_init_with_a_missing_model_is_an_error_and_the_server_stays(tmp_path):
    engine = EngineEnd(tmp_path, timeout=120)
    try:
        engine.send(1, "init", InitConfig(model_path=str(tmp_path / "no-model"), device="cpu"))
        reply = engine.receive()
        assert (reply.request_id, reply.name) == (1, "error")
        assert "no-model" in reply.body.message
        engine.send(2, "stats")
        assert "before init" in engine.receive().body.message
        engine.send(3, "shutdown")
        assert engine.receive().name == "ok"
    finally:
        engine.close()


def test_adapter_work_does_not_hold_up_the_steps_sent_after_it(tmp_path):
    # adapter_config.json is a FIFO: staging blocks on reading it until the test writes
    # the config, so the adapter thread is provably busy while the step is sent.
    slow = tmp_path / "slow-adapter"
    slow.mkdir()
    os.mkfifo(slow / "adapter_config.json")
    os.symlink(ADAPTER / "adapter_model.safetensors", slow / "adapter_model.safetensors")
    engine = EngineEnd(tmp_path, timeout=120)
    try:
        engine.send(1, "init", InitConfig(model_path=str(TINY), device="cpu", num_pages=512))
        assert engine.receive().name == "ready"
        engine.send(2, "stage_adapter", StageAdapter(7, str(slow)))
        engine.send(3, "step", one_seq_plan(3, -1, np.arange(8, dtype=np.int32)))
        first = engine.receive()
        assert (first.request_id, first.name) == (3, "step_result")
        (slow / "adapter_config.json").write_text((ADAPTER / "adapter_config.json").read_text())
        staged = engine.receive()
        assert (staged.request_id, staged.name) == (2, "adapter_staged")
        assert staged.body.rank == 8
        engine.send(4, "shutdown")
        assert engine.receive().name == "ok"
    finally:
        engine.close()


def test_stages_overlap_a_bad_one_fails_alone_and_a_load_waits_for_its_stage(tmp_path):
    # Both adapters' configs are FIFOs: each stage blocks until the test writes its
    # config. Releasing the second first and getting its reply while the first is still
    # blocked shows two stages ran at once; the load of the first, sent before it was
    # staged, must be answered after its `adapter_staged`.
    slow = {}
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        os.mkfifo(folder / "adapter_config.json")
        os.symlink(ADAPTER / "adapter_model.safetensors", folder / "adapter_model.safetensors")
        slow[name] = folder
    config_text = (ADAPTER / "adapter_config.json").read_text()
    engine = EngineEnd(tmp_path, timeout=120)
    try:
        engine.send(1, "init", InitConfig(model_path=str(TINY), device="cpu", num_pages=512))
        assert engine.receive().name == "ready"
        engine.send(2, "stage_adapter", StageAdapter(1, str(slow["first"])))
        engine.send(3, "stage_adapter", StageAdapter(2, str(slow["second"])))
        engine.send(4, "stage_adapter", StageAdapter(3, str(tmp_path / "missing")))
        engine.send(5, "stage_adapter", StageAdapter(4, str(ADAPTER)))
        replies = {}
        for _ in range(2):  # the bad one and the plain one, in either order
            reply = engine.receive()
            replies[reply.request_id] = reply
        assert replies[4].name == "error" and replies[4].body.code == "adapter_invalid"
        assert replies[5].name == "adapter_staged"
        (slow["second"] / "adapter_config.json").write_text(config_text)
        second = engine.receive()
        assert (second.request_id, second.name) == (3, "adapter_staged")
        num_pages = replies[5].body.num_pages
        engine.send(6, "load_adapter", LoadAdapter(1, np.arange(num_pages, dtype=np.int32)))
        (slow["first"] / "adapter_config.json").write_text(config_text)
        first, loaded = engine.receive(), engine.receive()
        assert (first.request_id, first.name) == (2, "adapter_staged")
        assert (loaded.request_id, loaded.name) == (6, "ok")
        # The same files staged on different threads: the same adapter.
        assert first.body.num_pages == second.body.num_pages == num_pages
        assert first.body.host_bytes == second.body.host_bytes == replies[5].body.host_bytes
        engine.send(7, "shutdown")
        assert engine.receive().name == "ok"
        assert engine.exit_code() == EXIT_OK
    finally:
        engine.close()


def test_steps_sent_back_to_back_are_answered_in_order_as_if_one_by_one(tmp_path):
    # The step thread launches a step before it reads the one before: the second step's
    # last sampled token comes from the device, and a failing step is answered after
    # the one launched before it.
    config = InitConfig(model_path=str(TINY), device="cpu", num_pages=512, cuda_graphs=False)
    first, second = prompt_then_decode_plans()
    unknown = replace(second, step_id=3, seq_ids=np.array([77], np.uint32))
    one_by_one = Executor(config)
    expected = [one_by_one.step(p).tokens.tolist() for p in (first, second)]
    engine = EngineEnd(tmp_path, timeout=120)
    try:
        engine.send(1, "init", config)
        assert engine.receive().name == "ready"
        for request_id, plan in enumerate([first, second, unknown, replace(second, step_id=4)], 2):
            engine.send(request_id, "step", plan)
        replies = [engine.receive() for _ in range(4)]
        assert [(r.request_id, r.name) for r in replies] == [
            (2, "step_result"),
            (3, "step_result"),
            (4, "error"),
            (5, "error"),  # the seq holds 5 tokens now, not the 4 the plan says
        ]
        assert [r.body.tokens.tolist() for r in replies[:2]] == expected
        assert "77" in replies[2].body.message and "num_cached" in replies[3].body.message
        engine.send(6, "shutdown")
        assert engine.receive().name == "ok"
    finally:
        engine.close()


def test_a_profile_window_of_served_steps_is_written(tmp_path):
    # step_profiler.py: steps 1..1 (the second launched) profiled, written at the third.
    profile = ("--profile-steps", "1:1", "--profile-out", str(tmp_path / "prof"))
    config = InitConfig(model_path=str(TINY), device="cpu", num_pages=512, cuda_graphs=False)
    first, second = prompt_then_decode_plans()
    third = replace(second, step_id=3, num_cached=np.array([5], np.int32),
                    kv_pages=np.array([10, 11], np.int32))  # fmt: skip
    engine = EngineEnd(tmp_path, timeout=120, flags=profile)
    try:
        engine.send(1, "init", config)
        assert engine.receive().name == "ready"
        for request_id, plan in enumerate([first, second, third], 2):
            engine.send(request_id, "step", plan)
            assert engine.receive().name == "step_result"
        engine.send(5, "shutdown")
        assert engine.receive().name == "ok"
    finally:
        engine.close()
    assert (tmp_path / "prof.txt").read_text().startswith("steps 1..1 (1): device busy")
    assert (tmp_path / "prof.json.gz").stat().st_size > 0


def test_grammars_compile_off_the_step_thread_refusals_by_name_drops_in_step_order(tmp_path):
    engine = EngineEnd(tmp_path, timeout=120)
    try:
        engine.send(1, "init", InitConfig(model_path=str(TINY), device="cpu", num_pages=512))
        assert engine.receive().name == "ready"
        engine.send(2, "compile_grammar", CompileGrammar(5, "choice", '["yes", "no"]'))
        compiled = engine.receive()
        assert (compiled.request_id, compiled.name) == (2, "grammar_compiled")
        assert compiled.body.grammar_id == 5 and not compiled.body.cached
        assert compiled.body.compile_ms > 0
        engine.send(3, "compile_grammar", CompileGrammar(6, "choice", '["yes", "no"]'))
        again = engine.receive()
        assert again.body.cached and again.body.compile_ms == 0
        engine.send(4, "compile_grammar", CompileGrammar(7, "json_schema", '{"not": {}}'))
        refused = engine.receive()
        assert (refused.name, refused.body.code) == ("error", "grammar_invalid")
        assert refused.body.request_id == 4 and "not" in refused.body.message
        # A step that starts a sequence of grammar 5, then its drop: the drop comes after.
        step = replace(
            one_seq_plan(8, -1, np.arange(8, dtype=np.int32)),
            grammar_ids=np.array([5], np.int32),
            logprobs=np.array([-1], np.int32),
        )
        engine.send(8, "step", step)
        engine.send(9, "drop_grammar", DropGrammar(5))
        replies = {m.request_id: m for m in (engine.receive() for _ in range(2))}
        assert replies[8].name == "step_result" and replies[8].body.grammar_errors.tolist() == [0]
        assert replies[9].name == "ok"
        engine.send(10, "shutdown")
        assert engine.receive().name == "ok"
    finally:
        engine.close()
