"""One rank's share of the model under Megatron-style tensor parallelism.

Rank r of N holds KV heads [r·Hkv/N, (r+1)·Hkv/N) with their query heads, columns
[r·I/N, (r+1)·I/N) of the MLP, and a contiguous slice of the vocabulary. Seen from one
rank the model is a narrower Llama: `local_config` is that model's ModelConfig (heads,
KV heads and intermediate size divided by N), so the pool, the page layout of adapters
and the LoRA tables are built from it unchanged; the page width is W/N.

Example:
    shard = TensorShard(rank=1, size=2)
    shard.check(cfg)                         # TensorParallelUnsupported names what fails
    local = shard.local_config(cfg)          # local.page_width == cfg.page_width // 2
    shard.vocab_range(cfg.vocab_size)        # (256, 512) for a 512-token vocabulary
"""

from dataclasses import dataclass, replace

from ..errors import ExecutorError
from ..model.config import ModelConfig

# Output features split by rank; the other two, o and down, are row-parallel: input
# features split by rank, outputs summed.
COLUMN_PARALLEL = ("q", "k", "v", "gate", "up")


class TensorParallelUnsupported(ExecutorError):
    """The model cannot be split over this many ranks (or the size itself is bad)."""

    code = "bad_message"


@dataclass(frozen=True)
class TensorShard:
    rank: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise TensorParallelUnsupported(f"tensor_parallel_size must be >= 1, got {self.size}")
        if not 0 <= self.rank < self.size:
            raise TensorParallelUnsupported(f"rank {self.rank} is outside 0..{self.size - 1}")

    def check(self, cfg: ModelConfig) -> None:
        n = self.size
        if cfg.num_kv_heads % n:
            raise TensorParallelUnsupported(
                f"num_key_value_heads {cfg.num_kv_heads} is not divisible by "
                f"tensor_parallel_size {n}: KV heads (and pool pages) are split by rank"
            )
        if cfg.intermediate_size % n:
            raise TensorParallelUnsupported(
                f"intermediate_size {cfg.intermediate_size} is not divisible by "
                f"tensor_parallel_size {n}"
            )
        if cfg.vocab_size < n:
            raise TensorParallelUnsupported(
                f"vocab_size {cfg.vocab_size} is smaller than tensor_parallel_size {n}"
            )

    def local_config(self, cfg: ModelConfig) -> ModelConfig:
        """The narrower model one rank computes; the vocabulary stays whole (sampling)."""
        self.check(cfg)
        return replace(
            cfg,
            num_heads=cfg.num_heads // self.size,
            num_kv_heads=cfg.num_kv_heads // self.size,
            intermediate_size=cfg.intermediate_size // self.size,
        )

    def vocab_shard_size(self, vocab_size: int) -> int:
        """Rows of the embedding every rank pads its share to (the last one may hold fewer)."""
        return -(-vocab_size // self.size)

    def vocab_range(self, vocab_size: int) -> tuple[int, int]:
        shard = self.vocab_shard_size(vocab_size)
        return min(vocab_size, self.rank * shard), min(vocab_size, (self.rank + 1) * shard)

    def out_range(self, module: str, cfg: ModelConfig) -> tuple[int, int]:
        """The slice of a column-parallel module's output features this rank computes."""
        width = {
            "q": cfg.num_heads * cfg.head_dim,
            "k": cfg.num_kv_heads * cfg.head_dim,
            "v": cfg.num_kv_heads * cfg.head_dim,
            "gate": cfg.intermediate_size,
            "up": cfg.intermediate_size,
        }[module] // self.size
        return self.rank * width, (self.rank + 1) * width

    def in_range(self, module: str, cfg: ModelConfig) -> tuple[int, int]:
        """The slice of a row-parallel module's input features this rank holds."""
        width = {
            "o": cfg.num_heads * cfg.head_dim,
            "down": cfg.intermediate_size,
        }[module] // self.size
        return self.rank * width, (self.rank + 1) * width
