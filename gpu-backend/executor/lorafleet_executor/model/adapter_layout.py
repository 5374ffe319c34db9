"""Where an adapter's rows sit within its list of pool pages (PROTOCOL.md "Page layout").

For each target module in canonical order: r rows of A (each `in` long), then r rows
of Bᵀ (each `out` long, pre-scaled); a row of length L takes ceil(L / W) consecutive
entries of the page list.

Example:
    spans, n = adapter_layout(8, ["q", "v"], cfg.module_shapes(), cfg.page_width)
    pages[spans["q"].a_start : spans["q"].b_start].reshape(8, spans["q"].a_row_pages)
"""

from dataclasses import dataclass

import numpy as np

MODULES = ("q", "k", "v", "o", "gate", "up", "down")


def pages_per_row(length: int, page_width: int) -> int:
    return -(-length // page_width)


@dataclass(frozen=True)
class ModuleSpan:
    rank: int
    a_start: int  # index into the adapter's page list
    a_row_pages: int  # ceil(in / W)
    b_start: int
    b_row_pages: int  # ceil(out / W)

    def a_pages(self, pages: np.ndarray) -> np.ndarray:
        """int32 [rank, a_row_pages]: the pool pages of each row of A."""
        return pages[self.a_start : self.b_start].reshape(self.rank, self.a_row_pages)

    def b_pages(self, pages: np.ndarray) -> np.ndarray:
        """int32 [rank, b_row_pages]: the pool pages of each row of Bᵀ."""
        end = self.b_start + self.rank * self.b_row_pages
        return pages[self.b_start : end].reshape(self.rank, self.b_row_pages)


def adapter_layout(
    rank: int, targets: list[str], shapes: dict[str, tuple[int, int]], page_width: int
) -> tuple[dict[str, ModuleSpan], int]:
    """(spans of each target module, total pages the adapter needs)."""
    spans: dict[str, ModuleSpan] = {}
    cursor = 0
    for module in MODULES:
        if module not in targets:
            continue
        fan_in, fan_out = shapes[module]
        a_row, b_row = pages_per_row(fan_in, page_width), pages_per_row(fan_out, page_width)
        spans[module] = ModuleSpan(rank, cursor, a_row, cursor + rank * a_row, b_row)
        cursor += rank * (a_row + b_row)
    return spans, cursor


def max_adapter_pages(max_rank: int, shapes: dict[str, tuple[int, int]], page_width: int) -> int:
    """Pages of the largest adapter `max_rank` allows: that rank on every module."""
    return adapter_layout(max_rank, list(MODULES), shapes, page_width)[1]
