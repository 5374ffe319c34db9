"""One host-to-device copy for all of a step's inputs.

A copy per array (`torch.from_numpy(a).to(device, non_blocking=True)`) from pageable
memory costs the host a driver staging copy and a launch each: ~42 per decode step on an
H100, with host time about equal to the GPU's (issue 21). A step instead packs its
arrays into one pinned host buffer at 8-byte aligned offsets, sends them with one copy,
and reads them as typed views of the device buffer.

Host buffers are taken round-robin, each guarded by an event recorded after its copy:
a later step waits for that event before it writes the buffer again, so a copy still in
flight never reads a later step's bytes. The device buffer is one, rewritten by every
step's copy: the step stream orders that copy behind the kernels of the steps before,
which read it. So a view is read only by its own step's work on that stream, never
after it (a later step reads an earlier one's samples, not its inputs: LateTokens).
Views are valid until the next `send`.

Example:
    packing = Packing()
    ids = packing.add(token_ids)                        # a Slot
    pages = packing.add(k_pages, size=256, pad=scratch)  # padded on the host
    sent = upload.send(packing)                          # the one copy
    sent[ids]                                            # int64 [T] on the device
"""

from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import torch

ALIGN = 8  # every slot starts here, so any dtype's view of it is aligned
MIN_BYTES = 1 << 16


@dataclass(frozen=True)
class Slot:
    """Where one array lies in a step's upload."""

    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.offset + prod(self.shape) * self.dtype.itemsize


class Packing:
    """A step's arrays, laid out; written into the host buffer by `StepUpload.send`, so an
    array must not change between `add` and `send`."""

    def __init__(self) -> None:
        self.nbytes = 0
        self._items: list[tuple[Slot, np.ndarray, Any]] = []

    def add(self, array: np.ndarray, size: int | None = None, pad: Any = 0) -> Slot:
        """`size`: the slot's length, the entries after the array's set to `pad`."""
        if array.dtype not in TORCH_DTYPES:
            raise ValueError(f"no device view of {array.dtype}")
        shape = array.shape if size is None else (size, *array.shape[1:])
        if size is not None and len(array) > size:
            raise ValueError(f"{len(array)} entries do not fit a slot of {size}")
        slot = Slot(-(-self.nbytes // ALIGN) * ALIGN, array.dtype, shape)
        self._items.append((slot, array, pad))
        self.nbytes = slot.end
        return slot

    def write(self, host: np.ndarray) -> None:
        """Into `host` (uint8, at least nbytes)."""
        for slot, array, pad in self._items:
            view = host[slot.offset : slot.end].view(slot.dtype).reshape(slot.shape)
            view[: len(array)] = array
            if len(array) < len(view):
                view[len(array) :] = pad


class Uploaded:
    """Typed views of bytes on the device laid out by a Packing."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data  # uint8

    def __getitem__(self, slot: Slot) -> torch.Tensor:
        return self.data[slot.offset : slot.end].view(TORCH_DTYPES[slot.dtype]).view(slot.shape)


TORCH_DTYPES = {
    np.dtype(numpy): dtype
    for numpy, dtype in (
        (np.bool_, torch.bool), (np.uint8, torch.uint8), (np.int8, torch.int8),
        (np.int16, torch.int16), (np.int32, torch.int32), (np.int64, torch.int64),
        (np.float16, torch.float16), (np.float32, torch.float32), (np.float64, torch.float64),
    )
}  # fmt: skip


class StepUpload:
    def __init__(
        self, device: torch.device, buffers: int = 2, event: Callable[[], Any] | None = None
    ) -> None:
        """`event` makes a buffer's guard (`record()` after its copy, `synchronize()` before
        it is written again); by default a CUDA event on a GPU, none on the CPU, where the
        copy is done when it returns."""
        self.device = device
        self.pinned = device.type == "cuda"
        if event is None and self.pinned:
            event = torch.cuda.Event
        self._hosts = [torch.empty(0, dtype=torch.uint8) for _ in range(buffers)]
        self._guards = [None if event is None else event() for _ in range(buffers)]
        self._next = 0
        self._device = torch.empty(0, dtype=torch.uint8, device=device)
        self.copies = 0  # host-to-device copies made, one per send

    def send(self, packing: Packing) -> Uploaded:
        """Writes `packing` into the next host buffer and queues its one copy."""
        i, nbytes = self._next, packing.nbytes
        self._next = (i + 1) % len(self._hosts)
        guard = self._guards[i]
        if guard is not None:
            guard.synchronize()  # its last copy has read the buffer
        if self._hosts[i].numel() < nbytes:
            self._hosts[i] = torch.empty(_grown(nbytes), dtype=torch.uint8, pin_memory=self.pinned)
        if self._device.numel() < nbytes:
            # The old buffer is freed in stream order: steps queued before still read it.
            self._device = torch.empty(_grown(nbytes), dtype=torch.uint8, device=self.device)
        host = self._hosts[i]
        packing.write(host.numpy())
        data = self._device[:nbytes]
        data.copy_(host[:nbytes], non_blocking=True)
        self.copies += 1
        if guard is not None:
            guard.record()
        return Uploaded(data)


def _grown(nbytes: int) -> int:
    """The next power of two: a growing step reallocates a few times, not every step."""
    return max(MIN_BYTES, 1 << (nbytes - 1).bit_length())
