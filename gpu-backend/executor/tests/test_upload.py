"""StepUpload: a step's arrays packed at aligned offsets into one host buffer, padded where
asked, sent with one copy and read back as typed views; host buffers taken round-robin,
each rewritten only after its guard says its last copy is done; growth. And the executor
making one upload per step, with no other host array turned into a tensor on its path."""

import os

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.graphs.buffers import Field, StaticArena
from lorafleet_executor.model.upload import ALIGN, MIN_BYTES, Packing, StepUpload
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

CPU = torch.device("cpu")
DTYPES = [np.int64, np.int32, np.float32, np.bool_, np.uint8, np.int16, np.float64]


@given(
    st.lists(
        st.sampled_from(DTYPES).flatmap(
            lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0))
        ),
        min_size=1,
        max_size=12,
    )
)
def test_arrays_of_any_dtype_and_length_come_back_equal_at_aligned_offsets(arrays):
    packing = Packing()
    slots = [packing.add(a) for a in arrays]
    sent = StepUpload(CPU).send(packing)
    for array, slot in zip(arrays, slots, strict=True):
        assert slot.offset % ALIGN == 0
        got = sent[slot]
        assert got.numpy().dtype == array.dtype and tuple(got.shape) == array.shape
        np.testing.assert_array_equal(got.numpy(), array)
    # slots never overlap
    spans = sorted((s.offset, s.end) for s in slots)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


def test_empty_arrays_take_no_bytes_and_read_back_empty():
    packing = Packing()
    empty = packing.add(np.zeros(0, np.int64))
    after = packing.add(np.array([7], np.int32))
    tables = packing.add(np.zeros((3, 0, 4), np.int32))
    sent = StepUpload(CPU).send(packing)
    assert (empty.offset, after.offset) == (0, 0)
    assert sent[empty].shape == (0,) and sent[tables].shape == (3, 0, 4)
    assert sent[after].tolist() == [7]


def test_a_sized_slot_is_padded_and_a_longer_array_refused():
    packing = Packing()
    first = packing.add(np.array([1, 2, 3], np.int8))  # 3 bytes: the next starts at 8
    pages = packing.add(np.array([4, 5], np.int32), size=5, pad=-1)
    sent = StepUpload(CPU).send(packing)
    assert first.end == 3 and pages.offset == 8 and pages.end == 28
    assert sent[pages].tolist() == [4, 5, -1, -1, -1]
    with pytest.raises(ValueError, match="3 entries do not fit a slot of 2"):
        Packing().add(np.zeros(3), size=2)


class FakeEvent:
    """Logs when its buffer's copy was recorded and when a writer waited for it."""

    log: list[tuple[str, int]] = []

    def __init__(self) -> None:
        self.id = len([e for e in FakeEvent.log if e[0] == "made"])
        FakeEvent.log.append(("made", self.id))

    def record(self) -> None:
        FakeEvent.log.append(("record", self.id))

    def synchronize(self) -> None:
        FakeEvent.log.append(("synchronize", self.id))


def test_host_buffers_rotate_and_each_is_rewritten_only_after_its_copy_is_waited_for():
    FakeEvent.log = []
    upload = StepUpload(CPU, buffers=2, event=FakeEvent)
    hosts = []
    for step in range(5):
        packing = Packing()
        slot = packing.add(np.full(10, step, np.int64))
        FakeEvent.log.append(("send", step))
        sent = upload.send(packing)
        hosts.append(upload._hosts[step % 2].data_ptr())
        assert sent[slot].tolist() == [step] * 10
    steps = [e for e in FakeEvent.log if e[0] != "made"]
    # step k takes buffer k % 2: waits for its guard, copies, records the guard again
    expected = []
    for step in range(5):
        expected += [("send", step), ("synchronize", step % 2), ("record", step % 2)]
    assert steps == expected
    assert hosts[0] != hosts[1] and hosts[0::2] == [hosts[0]] * 3 and hosts[1::2] == [hosts[1]] * 2
    assert upload.copies == 5


def test_a_larger_step_grows_the_buffers_and_later_steps_reuse_them():
    upload = StepUpload(CPU, buffers=2)
    big = np.arange(MIN_BYTES // 8 + 100, dtype=np.int64)  # past the first allocation
    sizes = []
    for array in (np.arange(4), big, np.arange(4), big[::-1].copy(), np.arange(3)):
        packing = Packing()
        slot = packing.add(array)
        sent = upload.send(packing)
        np.testing.assert_array_equal(sent[slot].numpy(), array)
        sizes.append([h.numel() for h in upload._hosts])
    grown = 2 * MIN_BYTES  # the next power of two
    # step k takes buffer k % 2: the big steps grow buffer 1 once, the small fit buffer 0
    assert sizes == [[MIN_BYTES, 0]] + [[MIN_BYTES, grown]] * 4
    assert upload._device.numel() == grown


def test_host_buffers_are_pinned_only_on_a_gpu():
    upload = StepUpload(CPU)
    upload.send(Packing())
    assert not upload.pinned and not upload._hosts[0].is_pinned()


def test_a_static_arena_is_filled_by_one_copy_from_its_slots_in_the_upload():
    fields = {"ids": Field(np.int64, 4), "pages": Field(np.int32, 3, 9), "flags": Field(np.int8, 5)}
    arena = StaticArena(fields, CPU)
    assert arena.views["pages"].tolist() == [9, 9, 9]  # padding before any step
    packing = Packing()
    before = packing.add(np.array([1, 2, 3], np.int16))  # the arena need not come first
    fill = arena.pack(
        packing, {"ids": [5, 6], "pages": np.array([1], np.int32), "flags": [1]}, {"flags": -2}
    )
    sent = StepUpload(CPU).send(packing)
    fill(sent)
    assert sent[before].tolist() == [1, 2, 3]
    assert arena.views["ids"].tolist() == [5, 6, 0, 0]
    assert arena.views["pages"].tolist() == [1, 9, 9]
    assert arena.views["flags"].tolist() == [1, -2, -2, -2, -2]


ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"


def test_every_step_makes_one_upload_and_turns_no_other_host_array_into_a_tensor(monkeypatch):
    """On CPU the step path's copies are counted where they would start: a host array
    becomes a tensor only through the step's upload."""
    require_fixture(TINY)
    config = InitConfig(model_path=str(TINY), num_pages=2000, max_num_seqs=4,
                        max_num_batched_tokens=40, max_lora_rank=64)  # fmt: skip
    executor = Executor(config)
    driver = Driver(executor, chunk_size=16)
    driver.add_adapter(10, str(ROOT / "adapters" / "tiny-r8"))
    made: list[str] = []

    def counted(name):
        real = getattr(torch, name)
        return lambda *args, **kwargs: (made.append(name), real(*args, **kwargs))[1]

    for name in ("from_numpy", "as_tensor", "tensor"):
        monkeypatch.setattr(torch, name, counted(name))
    launch, steps = executor.launch, []
    executor.launch = lambda plan: (steps.append(plan.num_seqs > 0), launch(plan))[1]
    rng = np.random.default_rng(0)
    requests = [
        Request(prompt=rng.integers(3, 200, size=n).tolist(), adapter_id=a, max_new_tokens=5,
                logprobs=2, **sampling)
        for n, a, sampling in ((30, 10, {}), (5, -1, {"temperature": 0.8, "seed": 3}),
                               (12, 10, {"repetition_penalty": 1.3, "presence_penalty": 0.5}))
    ]  # fmt: skip
    copies = executor.upload.copies
    driver.generate(requests)
    assert sum(steps) > 5  # prefill chunks, mixed and decode steps
    assert executor.upload.copies - copies == sum(steps)
    assert made == []
