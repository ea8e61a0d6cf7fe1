"""A process's place in a distributed job, from the environment torchrun sets, and joining its process group.

`ranks_from_env()` reads RANK, WORLD_SIZE and LOCAL_RANK (None outside a multi-process job, so every caller can
write ``if ranks is None: <the one-process path>``). `join(ranks, device, timeout_s)` initializes the default
process group (gloo on the CPU, NCCL on GPUs) and turns a rendezvous that cannot be reached into a one-line
`DistributedError` after `timeout_s`, never a hang. Only the main rank (rank 0) writes files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from .launch import DistributedError

DEFAULT_TIMEOUT_S = 60.0
"""How long a process waits for the others (rendezvous and each collective) before the job ends with a message."""


@dataclass(frozen=True)
class Ranks:
    """This process's rank among `world_size` processes (`local_rank` among those of its machine)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """The one process that writes the run directory and prints the summary."""
        return self.rank == 0


def _env_int(name: str, environ: dict) -> int:
    raw = environ.get(name)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise DistributedError(f"${name}: expected a whole number set by torchrun, got {raw!r}") from None


def ranks_from_env(environ: dict | None = None) -> Ranks | None:
    """This process's `Ranks` when torchrun started it as one of several; None for a one-process job."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    world = _env_int("WORLD_SIZE", environ)
    if world <= 1:
        return None
    rank = _env_int("RANK", environ)
    local = _env_int("LOCAL_RANK", environ) if "LOCAL_RANK" in environ else rank
    if not 0 <= rank < world:
        raise DistributedError(f"$RANK: expected 0 to {world - 1} (WORLD_SIZE={world}), got {rank}")
    return Ranks(rank=rank, world_size=world, local_rank=local)


def backend_for(device: str) -> str:
    """gloo for CPU tensors, NCCL for CUDA tensors (PyTorch's recommendation for each)."""
    return "nccl" if device.startswith("cuda") else "gloo"


def join(ranks: Ranks, device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join the job's default process group (once per process); a rendezvous not reached in `timeout_s` -> one line."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(backend_for(device), rank=ranks.rank, world_size=ranks.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:  # torch raises DistStoreError / DistNetworkError (RuntimeErrors)
        first = " ".join(str(err).split())[:200]
        raise DistributedError(f"rank {ranks.rank} of {ranks.world_size} could not join the job's rendezvous at "
                               f"{where} within {timeout_s:g} s ({first}); check --rdzv-endpoint / MASTER_ADDR and "
                               f"that every process was started") from None


def leave() -> None:
    """Leave the process group if this process joined one (at the end of the job)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
