"""HostBuffers: the host tier's memory, reused by exact size within the tier's bytes."""

import gc

import pytest
import torch

from lorafleet_executor.errors import CapacityExceeded
from lorafleet_executor.runtime.host_buffers import HostBuffers


def test_a_buffer_given_back_is_taken_again_for_its_size_only():
    buffers = HostBuffers(1000, shared=False, pin=False)
    a = buffers.take(300)
    assert a.data.dtype == torch.uint8 and a.data.numel() == 300
    buffers.give_back(a.data[10:20].view(torch.int16))  # any view of it gives it back
    assert buffers.take(300) is a  # no allocation
    b = buffers.take(200)
    assert b.id != a.id and buffers.bytes == 500
    assert sorted(buffers.live_ids()) == sorted([a.id, b.id])


def test_free_buffers_of_other_sizes_make_room_largest_first():
    buffers = HostBuffers(1000, shared=False, pin=False)
    big, small, in_use = buffers.take(500), buffers.take(200), buffers.take(250)
    buffers.give_back(big.data)
    buffers.give_back(small.data)
    # 950 held; 400 more fit once the 500 is released, the 200 stays for its size.
    c = buffers.take(400)
    assert buffers.live_ids() == [small.id, in_use.id, c.id] and buffers.bytes == 850
    assert buffers.take(200) is small


def test_a_buffer_that_cannot_fit_beside_those_in_use_is_refused():
    buffers = HostBuffers(1000, shared=False, pin=False)
    buffers.take(600)
    kept = buffers.take(100)
    buffers.give_back(kept.data)
    with pytest.raises(CapacityExceeded, match="600 of 1000 are in use"):
        buffers.take(500)
    assert buffers.bytes == 600 and buffers.live_ids() != []


def test_memory_from_elsewhere_is_left_alone():
    buffers = HostBuffers(1000, shared=False, pin=False)
    a = buffers.take(100)
    buffers.give_back(torch.zeros(100, dtype=torch.uint8))  # a tensor-parallel share, say
    assert buffers.take(100) is not a


def test_shared_buffers_are_shared_memory():
    buffers = HostBuffers(1000, shared=True, pin=False)
    assert buffers.take(100).data.is_shared()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_buffers_are_pinned_once_and_unpinned_when_released():
    buffers = HostBuffers(1 << 20, shared=True, pin=True)
    a = buffers.take(1 << 19)
    assert a.data.is_pinned()
    device = torch.empty(1 << 19, dtype=torch.uint8, device="cuda")
    a.data.fill_(7)
    device.copy_(a.data, non_blocking=True)
    torch.cuda.synchronize()
    assert int(device.float().mean()) == 7
    buffers.give_back(a.data)
    buffers.take(1 << 20)  # a's half does not fit beside it: released, and unregistered
    assert not a.data.is_pinned()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_buffers_collected_with_their_owner_are_unpinned_so_the_next_owner_pins_again():
    # Executors made one after another in one process (the GPU tests do): each one's
    # buffers are registered, and the memory is reused by the next one's.
    for _ in range(4):
        buffers = HostBuffers(1 << 21, shared=True, pin=True)
        taken = [buffers.take(430_080) for _ in range(3)]
        assert all(b.data.is_pinned() for b in taken)
        del buffers, taken
        gc.collect()
