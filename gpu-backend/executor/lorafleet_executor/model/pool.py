"""The unified memory pool: per layer one [pages, W] tensor shared by KV entries and adapter rows.

Page p is the same row in every layer's tensor. Pages 0..num_pages-1 belong to the
engine's allocator; one extra scratch page (index num_pages) lets padded rows of a
CUDA-graph batch write their KV somewhere harmless.

Example:
    pool = UnifiedPool(num_layers=2, num_pages=1024, page_width=128, dtype=torch.float32,
                       device=torch.device("cpu"))
    pool.layer(0)[pool.scratch_page]  # a row of W elements nobody reads
"""

import numpy as np
import torch

from ..errors import PageOutOfRange


class UnifiedPool:
    def __init__(
        self,
        num_layers: int,
        num_pages: int,
        page_width: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        if num_pages < 1:
            raise ValueError(f"a pool needs at least one page, got {num_pages}")
        self.num_pages = num_pages
        self.page_width = page_width
        self.scratch_page = num_pages
        self.data = torch.zeros(num_layers, num_pages + 1, page_width, dtype=dtype, device=device)

    def layer(self, index: int) -> torch.Tensor:
        """[num_pages + 1, W], contiguous."""
        return self.data[index]

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def check_pages(self, pages: np.ndarray, what: str) -> None:
        if len(pages) and (pages.min() < 0 or pages.max() >= self.num_pages):
            bad = pages[(pages < 0) | (pages >= self.num_pages)][0]
            raise PageOutOfRange(f"{what}: page {bad} is outside 0..{self.num_pages - 1}")

    def write_pages(self, pages: torch.Tensor, rows: torch.Tensor) -> None:
        """Copies rows [num_layers, n, W] (host or device) into pages int64 [n] of every layer."""
        self.data[:, pages] = rows.to(self.data.device, non_blocking=True)


def page_bytes(num_layers: int, page_width: int, dtype: torch.dtype) -> int:
    """Bytes one page id costs: a row of W elements in every layer."""
    return num_layers * page_width * torch.empty(0, dtype=dtype).element_size()


def pages_for_budget(
    budget_bytes: int, num_layers: int, page_width: int, dtype: torch.dtype
) -> int:
    # one page is held back as the scratch page
    return max(0, budget_bytes // page_bytes(num_layers, page_width, dtype) - 1)
