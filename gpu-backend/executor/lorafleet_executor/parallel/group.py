"""A tensor-parallel group of executor processes and the collectives the model needs.

Three process groups, each used by one thread of every rank in the same order, so
their collectives never interleave: `control` (gloo; the protocol reader: rank 0
broadcasts every message it acts on), `tensor` (NCCL on CUDA, gloo on CPU; the forward
pass: all-reduces, the logits gather, the sampled tokens) and `adapters` (gloo; the
adapter thread: every rank reports how its share of a stage/load/drop went).

Example:
    group = TensorGroup.join(rank, size, "tcp://127.0.0.1:29500")
    group.bind(torch.device("cuda"))         # at init, on every rank
    y = group.all_reduce(partial)            # Σ over ranks, in place
"""

import datetime
import pickle
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ExecutorError
from .shard import TensorParallelUnsupported, TensorShard

# A rank that is gone must not hang the others forever; a step is well below this.
TIMEOUT = datetime.timedelta(minutes=10)


class RankFailed(ExecutorError):
    """Another rank of the group failed the same request."""


@dataclass
class TensorGroup:
    shard: TensorShard
    control: Any  # dist.ProcessGroup (gloo)
    adapters: Any  # dist.ProcessGroup (gloo)
    tensor: Any = None  # dist.ProcessGroup, set by bind()

    @property
    def rank(self) -> int:
        return self.shard.rank

    @property
    def size(self) -> int:
        return self.shard.size

    @staticmethod
    def join(rank: int, size: int, init_method: str) -> "TensorGroup":
        shard = TensorShard(rank, size)
        dist.init_process_group(
            "gloo", init_method=init_method, rank=rank, world_size=size, timeout=TIMEOUT
        )
        adapters = dist.new_group(backend="gloo", timeout=TIMEOUT)
        return TensorGroup(shard, dist.group.WORLD, adapters)

    def bind(self, device: torch.device) -> None:
        """Creates the forward pass's group for the executor's device (every rank calls it)."""
        if device.type == "cuda" and torch.cuda.device_count() < self.size:
            raise TensorParallelUnsupported(
                f"tensor_parallel_size {self.size} needs {self.size} GPUs, "
                f"{torch.cuda.device_count()} visible"
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        self.tensor = dist.new_group(backend=backend, timeout=TIMEOUT)

    def leave(self) -> None:
        dist.destroy_process_group()

    # control: rank 0's protocol reader -> every other rank's
    def send_message(self, message: Any) -> None:
        dist.broadcast_object_list([message], src=0, group=self.control)

    def receive_message(self) -> Any:
        box = [None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    # tensor: the forward pass
    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(x, group=self.tensor)
        return x

    def embed(self, table: torch.Tensor, token_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """Vocabulary-parallel lookup: each rank fills the rows of its ids, one all-reduce."""
        start, end = self.shard.vocab_range(vocab_size)
        mine = (token_ids >= start) & (token_ids < end)
        hidden = table[torch.where(mine, token_ids - start, 0)]
        hidden = hidden * mine[:, None].to(hidden.dtype)
        return self.all_reduce(hidden)

    def gather_logits(self, local: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """[N, ceil(V / size)] per rank -> [N, V] on every rank."""
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local.contiguous(), group=self.tensor)
        return torch.cat(parts, dim=-1)[:, :vocab_size]

    def broadcast_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Rank 0's sampled tokens int64 [N] to every rank (only rank 0 samples, so the
        ranks' random streams never need to agree)."""
        dist.broadcast(tokens, src=0, group=self.tensor)
        return tokens

    def min_count(self, value: int, device: torch.device) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.tensor)
        return int(t.item())

    # adapters: every rank's outcome of one adapter request
    def agree(self, error: BaseException | None) -> None:
        """Raises this rank's error, else the first other rank's, else returns."""
        outcomes: list[Any] = [None] * self.size
        mine = None if error is None else _portable(error)
        dist.all_gather_object(outcomes, mine, group=self.adapters)
        if error is not None:
            raise error
        for rank, outcome in enumerate(outcomes):
            if outcome is not None:
                raise (
                    outcome
                    if isinstance(outcome, ExecutorError)
                    else RankFailed(f"rank {rank}: {outcome}")
                )


def _portable(error: BaseException) -> Any:
    """The error itself when it pickles (named errors keep their code), else its text."""
    try:
        pickle.dumps(error)
        return error
    except Exception:
        return f"{type(error).__name__}: {error}"
