"""PEFT LoRA adapters: read, checked by the shared rules (adapter_rules.py, the same as
the gateway's upload and the backend's registration) and packed into the pool's page
layout on the host. A bad adapter raises AdapterInvalid naming the first rule it breaks,
before any byte reaches the pool.

Example:
    adapter = parse_adapter(7, "/adapters/tiny-r8", cfg, max_rank=128, dtype=torch.float32)
    adapter.rows.shape  # [num_layers, num_pages, W], ready to copy into pool pages
"""

import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AdapterInvalid
from .adapter_layout import ModuleSpan, adapter_layout
from .adapter_rules import (
    CONFIG,
    MAX_CONFIG_BYTES,
    WEIGHTS,
    AdapterConfig,
    LoraTensor,
    check_config,
    check_lora_tensors,
    check_values,
    parse_safetensors_header,
    safetensors_header_end,
)
from .config import ModelConfig


@dataclass
class ParsedAdapter:
    adapter_id: int
    rank: int
    scale: float  # alpha / r, or alpha / sqrt(r) with rsLoRA; folded into Bᵀ rows
    targets: list[str]  # canonical order
    spans: dict[str, ModuleSpan]
    num_pages: int
    rows: torch.Tensor  # [num_layers, num_pages, W] pool dtype; pinned when for CUDA

    @property
    def host_bytes(self) -> int:
        return self.rows.numel() * self.rows.element_size()


@dataclass
class AdapterFiles:
    """A PEFT directory read and checked against the base model, not yet packed."""

    root: Path
    rank: int
    scale: float  # alpha / r, or alpha / sqrt(r) with rsLoRA
    targets: list[str]  # canonical order
    weights: dict[tuple[int, str, str], torch.Tensor]  # (layer, module, "A" | "B")


def packed_bytes(config: AdapterConfig, cfg: ModelConfig, dtype: torch.dtype) -> int:
    """Host bytes `parse_adapter` packs the adapter into: what a buffer for it holds."""
    _, num_pages = adapter_layout(config.rank, config.targets, cfg.module_shapes(), cfg.page_width)
    return cfg.num_layers * num_pages * cfg.page_width * dtype.itemsize


def read_adapter_config(path: str | Path, cfg: ModelConfig, max_rank: int) -> AdapterConfig:
    """adapter_config.json checked by the rules (it gives the packed size: read first)."""
    root = Path(path)
    if not root.is_dir():
        raise AdapterInvalid(f"{root} is not a directory")
    config_path = root / CONFIG
    # Whatever is there is read, bounded (a FIFO holds the stage until written: the
    # tests hold stages so); the backend's registration takes regular files only.
    if not config_path.exists() or config_path.is_dir():
        raise AdapterInvalid(f"{CONFIG} is missing", "missing_file")
    with config_path.open("rb") as f:
        return check_config(f.read(MAX_CONFIG_BYTES + 1), max_rank)


def read_adapter_files(
    path: str | Path, cfg: ModelConfig, max_rank: int, config: AdapterConfig | None = None
) -> AdapterFiles:
    """`config`: read_adapter_config's, when the caller read it already (it is read once).
    The weights are views of the file's pages (a private mapping), not copies: packing
    reads each value from the page cache."""
    root = Path(path)
    config = config or read_adapter_config(root, cfg, max_rank)
    weights_path = root / WEIGHTS
    if not weights_path.is_file():  # mapped: a regular file only
        if (root / "adapter_model.bin").exists():
            raise AdapterInvalid(
                f"adapter_model.bin is a pickle; only {WEIGHTS} is accepted", "pickle_not_accepted"
            )
        raise AdapterInvalid(f"{WEIGHTS} is missing", "missing_file")
    weights = _read_weights(weights_path, config, cfg)
    return AdapterFiles(root, config.rank, config.scale, config.targets, weights)


def _read_weights(
    path: Path, config: AdapterConfig, cfg: ModelConfig
) -> dict[tuple[int, str, str], torch.Tensor]:
    """The header and values checked by the rules, then every LoRA weight as a view of a
    private, copy-on-write mapping of the file. The kernel is asked to read the whole file
    ahead at once, so a file not in the page cache arrives in large reads, not a page fault
    at a time."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        end = safetensors_header_end(head, size)
        entries = parse_safetensors_header(head + f.read(end - 8), size)
        tensors = check_lora_tensors(entries, config, cfg.num_layers, cfg.module_shapes())
        # Not empty: every LoRA weight has elements, and the tensors tile the data.
        os.posix_fadvise(f.fileno(), 0, size, os.POSIX_FADV_WILLNEED)
        mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
    data = np.frombuffer(mapped, np.uint8)[end:]
    check_values(tensors, data, config.scale)
    return {(t.layer, t.module, t.side): _tensor(t, data) for t in tensors}


_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def _tensor(t: LoraTensor, data: np.ndarray) -> torch.Tensor:
    """A view of the tensor's bytes in the mapping (a copy only where a writer did not
    align it, rare)."""
    dtype = _TORCH[t.entry.dtype]
    raw = data[t.entry.begin : t.entry.end]
    if raw.ctypes.data % dtype.itemsize:
        raw = raw.copy()
    return torch.from_numpy(raw).view(dtype).view(t.entry.shape)


def parse_adapter(
    adapter_id: int,
    path: str | Path,
    cfg: ModelConfig,
    max_rank: int,
    dtype: torch.dtype,
    pin: bool = False,
    out: torch.Tensor | None = None,
    config: AdapterConfig | None = None,
) -> ParsedAdapter:
    """out: a uint8 buffer to pack the rows into when they fit (its first host_bytes);
    the rows are then a view of it, and nothing else is allocated for them. config: its
    read_adapter_config, when the caller read it already (to size `out`)."""
    files = read_adapter_files(path, cfg, max_rank, config)
    return packed_adapter(adapter_id, files, files.weights, cfg, dtype, pin, out)


def packed_adapter(
    adapter_id: int,
    files: AdapterFiles,
    weights: dict[tuple[int, str, str], torch.Tensor],
    cfg: ModelConfig,
    dtype: torch.dtype,
    pin: bool,
    out: torch.Tensor | None = None,
) -> ParsedAdapter:
    """`weights` (all of `files`' or a rank's share) -> the host-tier adapter in `cfg`'s
    page layout, packed straight into (pinned) memory of the pool dtype: one buffer, or
    the start of `out` (uint8) when it is big enough. The rules keep every value within
    fp16's range once scaled, so no pool dtype overflows."""
    rank, scale, targets = files.rank, files.scale, files.targets
    spans, num_pages = adapter_layout(rank, targets, cfg.module_shapes(), cfg.page_width)
    rows = _pack(weights, spans, cfg, num_pages, scale, dtype, pin, out)
    return ParsedAdapter(adapter_id, rank, scale, targets, spans, num_pages, rows)


def _pack(
    weights: dict[tuple[int, str, str], torch.Tensor],
    spans: dict[str, ModuleSpan],
    cfg: ModelConfig,
    num_pages: int,
    scale: float,
    dtype: torch.dtype,
    pin: bool,
    out: torch.Tensor | None,
) -> torch.Tensor:
    width, layers = cfg.page_width, range(cfg.num_layers)
    # The spans tile all pages, so every element is written below: data, then row tails.
    shape = (cfg.num_layers, num_pages * width)
    nbytes = shape[0] * shape[1] * dtype.itemsize
    if out is not None and out.numel() >= nbytes:
        rows = out[:nbytes].view(dtype).view(shape)
    else:
        rows = torch.empty(shape, dtype=dtype, pin_memory=pin)

    def pack_layer(layer: int) -> None:
        row = rows[layer]
        for module, span in spans.items():
            for kind, start, row_pages in (
                ("A", span.a_start, span.a_row_pages),
                ("B", span.b_start, span.b_row_pages),
            ):
                block = row[start * width : (start + span.rank * row_pages) * width]
                block = block.view(span.rank, row_pages * width)
                source = weights[(layer, module, kind)]
                if kind == "A":  # [r, in]
                    length = source.shape[1]
                    block[:, :length].copy_(source)
                else:  # [out, r]
                    length = source.shape[0]
                    _scaled_transpose(block[:, :length], source, scale)
                block[:, length:] = 0

    # Layers in the order the file holds them: packing follows the reads the kernel was
    # asked for (`_read_weights`), so a file not in the page cache is packed as it arrives.
    # Layers are disjoint: packed on torch's intra-op threads' worth of threads at once (a
    # staging worker has a few); memory bandwidth, not one core, is then the bound.
    order = sorted(layers, key=lambda layer: min(t.data_ptr() for t in _of_layer(weights, layer)))
    with ThreadPoolExecutor(max(1, min(len(order), torch.get_num_threads()))) as pool:
        list(pool.map(pack_layer, order))
    return rows.view(cfg.num_layers, num_pages, width)


def _of_layer(weights: dict[tuple[int, str, str], torch.Tensor], layer: int) -> list[torch.Tensor]:
    return [t for (at, _, _), t in weights.items() if at == layer]


def _scaled_transpose(out: torch.Tensor, b: torch.Tensor, scale: float) -> None:
    """out [r, n] = scale · bᵀ for b [n, r], rounded once to out's dtype. Of the packing's
    time the transpose is most: numpy's transposing copy is ~2.7x torch's on the CPU."""
    if b.dtype == out.dtype and b.element_size() == 2:
        out.view(torch.int16).numpy()[:] = b.view(torch.int16).numpy().T
        if scale != 1:
            out.mul_(scale)  # half times a Python float: fp32 math, one rounding
    else:
        out.copy_(b.float().t() * scale)
