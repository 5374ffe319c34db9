"""The host tier: parsed adapters in (pinned, on CUDA) host memory, within a byte bound.

The engine alone decides what the tier holds (PROTOCOL.md `ready`): it drops adapters to
make room before it stages one, so a `put` that does not fit is refused, never made to
fit by evicting something the engine still counts on.

An adapter that leaves (dropped or replaced) is handed to `on_leave`: its rows' buffer goes
back to the host buffers (host_buffers.py) for the next adapter of its size.

Thread-safe: adapters are staged on several threads at once while the adapter thread
loads and the reader drops (server.py).

Example:
    cache = HostCache(capacity_bytes=4 << 30, on_leave=lambda adapter: None)
    cache.put(adapter)  # CapacityExceeded when it does not fit beside the others
    cache.get(7)
"""

import threading
from collections.abc import Callable

from ..errors import CapacityExceeded, UnknownAdapter
from ..model.adapters import ParsedAdapter


class HostCache:
    def __init__(self, capacity_bytes: int, on_leave: Callable[[ParsedAdapter], None]) -> None:
        self.capacity_bytes = capacity_bytes
        self._on_leave = on_leave
        self.used_bytes = 0
        self._entries: dict[int, ParsedAdapter] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, adapter_id: int) -> bool:
        with self._lock:
            return adapter_id in self._entries

    def put(self, adapter: ParsedAdapter) -> None:
        """Stores (or replaces) an adapter; refuses one that does not fit beside the rest."""
        with self._lock:
            replaced = self._entries.get(adapter.adapter_id)
            free = self.capacity_bytes - self.used_bytes
            if replaced is not None:
                free += replaced.host_bytes
            if adapter.host_bytes > free:
                raise CapacityExceeded(
                    f"adapter {adapter.adapter_id} needs {adapter.host_bytes} bytes; the host "
                    f"tier has {free} of {self.capacity_bytes} free"
                )
            if replaced is not adapter:
                self._drop(adapter.adapter_id)
                self._entries[adapter.adapter_id] = adapter
                self.used_bytes += adapter.host_bytes

    def get(self, adapter_id: int) -> ParsedAdapter:
        with self._lock:
            adapter = self._entries.get(adapter_id)
            if adapter is None:
                raise UnknownAdapter(f"adapter {adapter_id} is not staged in the host cache")
            return adapter

    def drop(self, adapter_id: int) -> None:
        with self._lock:
            self._drop(adapter_id)

    def _drop(self, adapter_id: int) -> None:
        adapter = self._entries.pop(adapter_id, None)
        if adapter is not None:
            self.used_bytes -= adapter.host_bytes
            self._on_leave(adapter)
