"""The host tier: a byte-bounded LRU of parsed adapters (pinned memory on CUDA).

Thread-safe: adapters are staged on several threads at once while the adapter thread
loads and drops (server.py).

Example:
    cache = HostCache(capacity_bytes=4 << 30)
    evicted = cache.put(adapter)  # ids that made room, least recently used first
    cache.get(7)                  # marks 7 most recently used
"""

import threading
from collections import OrderedDict

from .adapters import ParsedAdapter
from .errors import CapacityExceeded, UnknownAdapter


class HostCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[int, ParsedAdapter] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, adapter_id: int) -> bool:
        with self._lock:
            return adapter_id in self._entries

    def can_put(self, adapter: ParsedAdapter) -> bool:
        return adapter.host_bytes <= self.capacity_bytes

    def put(self, adapter: ParsedAdapter) -> list[int]:
        """Stores (or replaces) an adapter, evicting least recently used ones to fit it."""
        if not self.can_put(adapter):
            raise CapacityExceeded(
                f"adapter {adapter.adapter_id} needs {adapter.host_bytes} bytes; "
                f"the host cache holds {self.capacity_bytes}"
            )
        with self._lock:
            self._drop(adapter.adapter_id)
            evicted = []
            while self.used_bytes + adapter.host_bytes > self.capacity_bytes:
                old_id, old = self._entries.popitem(last=False)
                self.used_bytes -= old.host_bytes
                evicted.append(old_id)
            self._entries[adapter.adapter_id] = adapter
            self.used_bytes += adapter.host_bytes
            return evicted

    def get(self, adapter_id: int) -> ParsedAdapter:
        with self._lock:
            adapter = self._entries.get(adapter_id)
            if adapter is None:
                raise UnknownAdapter(f"adapter {adapter_id} is not staged in the host cache")
            self._entries.move_to_end(adapter_id)
            return adapter

    def drop(self, adapter_id: int) -> None:
        with self._lock:
            self._drop(adapter_id)

    def _drop(self, adapter_id: int) -> None:
        adapter = self._entries.pop(adapter_id, None)
        if adapter is not None:
            self.used_bytes -= adapter.host_bytes
