"""The host tier's memory: byte buffers reused by size, so staging an adapter allocates
nothing once the tier has warmed up, and packs it where the tier keeps it (no copy after).

A stage takes a buffer of exactly the adapter's packed size (`model.adapters.packed_bytes`:
the config says it before any weight is read), the adapter is packed into it, and the host
tier keeps it; dropping the adapter gives the buffer back for the next adapter of that
size (adapters of one rank and targets have one size). Buffers in use and kept free
together stay within the tier's bytes: free ones of other sizes are released first.

On a GPU the buffers are shared memory, which the staging worker processes write
(stage_processes.py), registered with CUDA once when made: pinned, so a load copies from
them asynchronously, and never registered again while they are reused. A buffer is
unregistered when released or when collected with its owner: CUDA keeps a registration
past the memory's unmapping, and the next mapping at that address would then fail to
register (cudaErrorHostMemoryAlreadyRegistered, seen when a process made executors one
after another).

Thread-safe: stages run on several threads while the reader drops.

Example:
    buffers = HostBuffers(capacity_bytes=8 << 30, shared=True, pin=True)
    buffer = buffers.take(67_108_864)   # HostBuffer(id, data: uint8 tensor of that size)
    ...                                 # pack into buffer.data, keep it in the host tier
    buffers.give_back(buffer.data)      # when the adapter leaves the tier
"""

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import CapacityExceeded


@dataclass(frozen=True)
class HostBuffer:
    id: int  # the staging workers keep each buffer mapped by it
    data: torch.Tensor  # uint8 [nbytes]


class HostBuffers:
    def __init__(self, capacity_bytes: int, shared: bool, pin: bool) -> None:
        self.capacity_bytes = capacity_bytes
        self.shared = shared
        self.pin = pin
        self._lock = threading.Lock()
        self._free: dict[int, list[HostBuffer]] = {}  # by size
        self._in_use: dict[int, HostBuffer] = {}  # by data pointer
        self._unpin: dict[int, Callable[[], None]] = {}  # by data pointer, pinned buffers
        self._bytes = 0  # in use and free
        self._next_id = 0

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def take(self, nbytes: int) -> HostBuffer:
        """A buffer of exactly `nbytes`: a free one of that size, else a new one. Raises
        CapacityExceeded when even with every free buffer released it would not fit."""
        with self._lock:
            same_size = self._free.get(nbytes)
            if same_size:
                buffer = same_size.pop()
            else:
                self._release_free_until(self.capacity_bytes - nbytes)
                if self._bytes + nbytes > self.capacity_bytes:
                    raise CapacityExceeded(
                        f"a host buffer of {nbytes} bytes does not fit: {self._bytes} of "
                        f"{self.capacity_bytes} are in use"
                    )
                buffer = HostBuffer(self._next_id, self._allocate(nbytes))
                self._next_id += 1
                self._bytes += nbytes
            self._in_use[buffer.data.data_ptr()] = buffer
            return buffer

    def give_back(self, data: torch.Tensor) -> None:
        """The buffer that `data` (or a view of it) lives in is free again; data from no
        buffer of ours (a tensor-parallel rank's share) is left alone."""
        with self._lock:
            buffer = self._in_use.pop(data.untyped_storage().data_ptr(), None)
            if buffer is not None:
                self._free.setdefault(buffer.data.numel(), []).append(buffer)

    def live_ids(self) -> list[int]:
        """Ids of the buffers held (in use or kept free): the workers may unmap the rest."""
        with self._lock:
            kept = [b.id for same_size in self._free.values() for b in same_size]
            return kept + [b.id for b in self._in_use.values()]

    def _allocate(self, nbytes: int) -> torch.Tensor:
        data = torch.empty(nbytes, dtype=torch.uint8)
        if self.shared:
            data.share_memory_()
        if self.pin and nbytes > 0:
            cudart, pointer = torch.cuda.cudart(), data.data_ptr()
            error = int(cudart.cudaHostRegister(pointer, nbytes, 0))
            if error != 0:  # cudaSuccess
                raise RuntimeError(f"cudaHostRegister of {nbytes} bytes failed: {error}")
            unpin = weakref.finalize(data, cudart.cudaHostUnregister, pointer)
            unpin.atexit = False  # the process's exit unmaps it, CUDA may be gone by then
            self._unpin[pointer] = unpin
        return data

    def _release_free_until(self, bytes_left: int) -> None:
        """Frees kept buffers, the largest first, until at most `bytes_left` are held."""
        sizes = sorted(self._free, reverse=True)
        for size in sizes:
            kept = self._free[size]
            while kept and self._bytes > bytes_left:
                buffer = kept.pop()
                unpin = self._unpin.pop(buffer.data.data_ptr(), None)
                if unpin is not None:
                    unpin()
                self._bytes -= size
            if not kept:
                del self._free[size]
