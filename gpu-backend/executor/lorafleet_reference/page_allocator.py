"""A trivial page allocator for the standalone driver (the engine has the real one).

Pages come off a free list in a seeded random order, so tests exercise non-contiguous,
shuffled pages.

Example:
    pages = PageAllocator(1024, seed=0)
    if pages.can_allocate(8):
        got = pages.allocate(8)  # int32 [8]
    pages.free(got)
"""

import numpy as np

from lorafleet_executor.errors import CapacityExceeded


class PageAllocator:
    def __init__(self, num_pages: int, seed: int | None = None) -> None:
        order = np.arange(num_pages, dtype=np.int32)
        if seed is not None:
            np.random.default_rng(seed).shuffle(order)
        self.num_pages = num_pages
        self._free = list(order[::-1])
        self._used: set[int] = set()

    @property
    def num_free(self) -> int:
        return len(self._free)

    def can_allocate(self, n: int) -> bool:
        return n <= len(self._free)

    def allocate(self, n: int) -> np.ndarray:
        if not self.can_allocate(n):
            raise CapacityExceeded(f"{n} pages asked, {len(self._free)} free")
        pages = np.array([self._free.pop() for _ in range(n)], np.int32)
        self._used.update(pages.tolist())
        return pages

    def free(self, pages: np.ndarray) -> None:
        for page in pages.tolist():
            if page not in self._used:
                raise ValueError(f"page {page} is not allocated (double free?)")
            self._used.remove(page)
            self._free.append(page)
