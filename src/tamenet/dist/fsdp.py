"""Models too big for one device: an exported member sharded by PyTorch's FSDP (`fully_shard`, "FSDP2").

A population trains all its members on one device; a single model whose weights, gradients and optimizer state
do not fit one device leaves the population engine: export the member (`tamenet.models.export.export_member`,
a plain `nn.Sequential`) and shard it over the processes of a torchrun job with `shard_member`. Each process then
holds 1/N of every parameter (a `DTensor` shard); FSDP all-gathers a layer's weights just before its forward and
backward and reduce-scatters its gradients (averaged over the ranks) right after (Zhao et al., "PyTorch FSDP",
VLDB 2023; the ZeRO-3 scheme of Rajbhandari et al., SC 2020). `train_sharded` is the short loop: the same batch
order on every rank, each rank on its rows of every batch (`data_parallel.shard_bounds`), its loss's gradient
scaled by its share so the average is the global batch's mean (as in data-parallel training), an optimizer of
torch's on the shards. `full_state_dict` gathers the whole weights back (on every rank; rank 0 saves them).

What works (smoke-tested with 2 gloo processes on the CPU, torch 2.13): Linear / activation / Dropout stacks,
training equal to one process's on the global batch to float tolerance. What does not equal one process:
torch's own BatchNorm (each rank's batch statistics; `torch.nn.SyncBatchNorm` runs on GPUs only) and torch's
Dropout (its masks come from each rank's own generator). On GPUs use the NCCL backend, one GPU per process.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data_parallel import ScaledGradient, shard_bounds
from .launch import DistributedError

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}
"""The losses `train_sharded` knows: a mean over the batch's rows, as tamenet's."""

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
"""The optimizers `train_sharded` builds on the shards."""


def _group() -> tuple[int, int]:
    import torch.distributed as dist

    if not dist.is_initialized():
        raise DistributedError("FSDP shards a module over the processes of a job: expected a joined process group "
                               "(run under torchrun and call tamenet.dist.group.join first), got none")
    return dist.get_rank(), dist.get_world_size()


def shard_member(module: nn.Module) -> nn.Module:
    """Shard `module` over the job's processes with `fully_shard`: each child that holds parameters, then the whole.

    Sharding the children separately lets FSDP gather one layer's weights at a time (the memory saving); the
    root call covers what is left. Returns the same module, now an `FSDPModule` whose parameters are DTensors.
    """
    from torch.distributed.fsdp import fully_shard

    if not isinstance(module, nn.Module):
        raise TypeError(f"shard_member: expected an nn.Module (e.g. export_member(...)), got {type(module).__name__}")
    _group()
    for child in list(module.children()):
        if any(True for _ in child.parameters()):
            fully_shard(child)
    fully_shard(module)
    return module


def train_sharded(module: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str = "cross_entropy",
                  optimizer: str = "adam", lr: float = 1e-3, epochs: int = 1, batch_size: int = 32,
                  seed: int = 0) -> list[float]:
    """Train a `shard_member` module on rows X [N, F] and targets y [N] (the same on every rank); each epoch's
    mean training loss over all N rows, equal on every rank.

    The batch order is `randperm(N)` seeded by (seed, epoch) on every rank; rank r trains on its rows of each
    batch with its loss's gradient scaled by `N_ranks n_r / B`, so FSDP's averaged gradient is the mean over the
    whole batch (a batch needs at least one row per rank).
    """
    import torch.distributed as dist

    rank, world = _group()
    if loss not in LOSSES or optimizer not in OPTIMIZERS:
        raise ValueError(f"train_sharded: expected loss in {sorted(LOSSES)} and optimizer in {sorted(OPTIMIZERS)}, "
                         f"got {loss!r}, {optimizer!r}")
    if batch_size < world or (len(X) % batch_size and len(X) % batch_size < world):
        raise DistributedError(f"train_sharded: every batch needs at least one row per process ({world}); got "
                               f"batch_size {batch_size} for {len(X)} rows")
    loss_fn, opt = LOSSES[loss], OPTIMIZERS[optimizer](module.parameters(), lr=lr)
    history = []
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, len(X), batch_size):
            rows = order[start:start + batch_size]
            lo, hi = shard_bounds(len(rows), world, rank)
            mine = rows[lo:hi]
            value = loss_fn(module(X[mine]), y[mine])
            ScaledGradient.apply(value, world * (hi - lo) / len(rows)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            total += value.detach().double() * (hi - lo)
        dist.all_reduce(total)
        history.append(float(total) / len(X))
    return history


def full_state_dict(module: nn.Module) -> dict[str, Any]:
    """The whole weights of a sharded module as plain tensors (a collective: call it on every rank)."""
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
            for k, v in module.state_dict().items()}
