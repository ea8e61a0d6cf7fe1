"""Data-parallel training (I2): one population trained by N processes, each on 1/N of every batch.

Under ``torchrun`` (or ``tamenet train --nproc N``) every process builds the same population from the same
seeds and walks the same batch order; at each step process r keeps rows [lo_r, hi_r) of the global batch of B
rows (`shard_bounds`: sizes differ by at most one), and `torch.nn.parallel.DistributedDataParallel` (gloo on the
CPU, NCCL on GPUs) all-reduces the gradients during the backward pass. What makes the result that of one
process with the same global batch, to floating-point tolerance:

* loss: each member's loss is a mean over the batch. DDP averages the ranks' gradients, `(1/N) sum_r g_r`;
  process r's gradient is scaled by `N n_r / B` (`ScaledGradient`, forward unchanged), so the average is
  `sum_r (n_r / B) g_r = grad (1/B) sum_i loss_i` for any split, a last partial batch included (a batch
  needs at least N rows: one per process);
* dropout and noise: process r's row i draws the numbers of global row `lo_r + i` (`MemberRandom.row_offset`),
  so the masks are those of the one-process run, row for row;
* BatchNorm: per-member statistics over all N shards (`BatchNorm.synced`, two differentiable all-reduces);
* the epoch's train loss and metric are sums all-reduced over the ranks; validation runs on every rank on
  the same weights (identical after each step: the averaged gradient is the same everywhere), so early
  stopping, halving and compaction take the same decision on every rank; `check_agreement` verifies it
  each epoch and ends the job with one line if not.

Only rank 0 writes (the run directory, trackers, the printed summary). A compaction shrinks the member
tensors in place, so the DDP wrapper (its gradient buckets) is rebuilt after one.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .group import Ranks
from .launch import DistributedError

if TYPE_CHECKING:
    from ..train.loop import Trainer


def shard_bounds(batch: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of a batch of `batch` rows that process `rank` of `world` trains on (the first
    `batch % world` ranks hold one row more: `torch.tensor_split`'s rule)."""
    base, extra = divmod(batch, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def check_batches(n_train: int, batch_size: int, world: int) -> None:
    """Every batch of an epoch (the last, partial one included) must give each of `world` processes a row."""
    last = n_train % batch_size or batch_size
    smallest = min(batch_size, last)
    if smallest < world:
        which = "train.batch_size" if batch_size < world else f"the last batch of the epoch ({n_train} rows in " \
                                                              f"batches of {batch_size} leave {last})"
        raise DistributedError(f"{which}: {smallest} row(s) cannot be split over {world} processes; expected a "
                               f"batch size and a last batch of at least {world} rows (change train.batch_size)")


class ScaledGradient(torch.autograd.Function):
    """`y = x` forward, `dx = factor * dy` backward: a rank's share of the global mean's gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:  # noqa: D102
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad * ctx.factor, None


class ShardLoss:
    """The step's loss piece, its gradient scaled by this rank's share `N n_r / B` (its value unchanged)."""

    def __init__(self, inner: Any, parallel: "DataParallel") -> None:
        self.inner, self.parallel = inner, parallel

    def __getattr__(self, name: str) -> Any:  # begin_epoch, check, keep_members_, ...: the wrapped piece's
        if name == "inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, trainer: "Trainer", out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.inner(trainer, out, y)
        factor = self.parallel.grad_factor
        return loss if factor == 1.0 else ScaledGradient.apply(loss, factor)


def sync_batch_norms(model: torch.nn.Module, device: torch.device) -> int:
    """Make every BatchNorm of `model` take its statistics over all processes; the number synchronized.

    tamenet's per-member `BatchNorm` is synchronized by its own all-reduces (PyTorch's `SyncBatchNorm` runs on
    GPUs only); torch's own BatchNorm layers (a user's module) become `torch.nn.SyncBatchNorm` on a GPU and are
    refused on the CPU; SwitchNorm's batch branch and a tracked InstanceNorm's running averages are refused (not
    synchronized).
    """
    from ..nn.norms import BatchNorm, InstanceNorm, SwitchNorm

    count = 0
    for module in model.modules():
        if isinstance(module, SwitchNorm) or (isinstance(module, InstanceNorm) and module.track_running_stats):
            raise DistributedError(f"{type(module).__name__}: its running statistics (averaged over each rank's "
                                   "batch) are not synchronized across processes; expected norm batch, layer, group "
                                   "or instance (untracked) for data-parallel training")
        if isinstance(module, BatchNorm):
            module.synced = True
            count += 1
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, torch.nn.SyncBatchNorm):
            if device.type != "cuda":
                raise DistributedError(f"{type(module).__name__} in the module: torch's SyncBatchNorm runs on GPUs "
                                       "only; expected train.device cuda, or no torch BatchNorm layer, for "
                                       "data-parallel training on the CPU")
    if device.type == "cuda":
        converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if converted is not model:  # pragma: no cover - a bare BatchNorm module as the whole model
            raise DistributedError("a module that is one BatchNorm layer cannot be trained data-parallel")
    return count


class DataParallel:
    """What a trainer needs to train on one shard of every batch; see the module docstring.

    `attach(trainer)` wraps the population in DDP, synchronizes its BatchNorms and wraps the loss piece; the
    loop then calls `shard` (each step's rows), `forward` (the model through DDP), `sum_over_ranks` (the
    epoch's sums) and `check_agreement` (each epoch's decisions).
    """

    def __init__(self, ranks: Ranks) -> None:
        self.ranks = ranks
        self.grad_factor = 1.0
        self.ddp: torch.nn.Module | None = None
        self._shapes: tuple = ()

    def attach(self, trainer: "Trainer") -> None:
        check_batches(trainer.data.n_train, trainer.batch_size, self.ranks.world_size)
        sync_batch_norms(trainer.model, trainer.device)
        trainer.step.loss = ShardLoss(trainer.step.loss, self)
        trainer.parallel = self
        self._wrap(trainer.model, trainer.device)

    def _wrap(self, model: torch.nn.Module, device: torch.device) -> None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else self.ranks.local_rank] if device.type == "cuda" else None
        # buffers (running statistics, dropout rates) are equal on every rank already: not synced at each forward
        accepts = inspect.signature(DistributedDataParallel).parameters
        sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in accepts else {"broadcast_buffers": False}
        self.ddp = DistributedDataParallel(model, device_ids=ids, **sync)
        self._shapes = _param_shapes(model)

    def shard(self, trainer: "Trainer", positions: torch.Tensor) -> torch.Tensor:
        """This rank's part of the global batch `positions` ([B] or [M, B]); sets its draws' row offset and its
        gradient share for the step."""
        batch = positions.shape[-1]
        lo, hi = shard_bounds(batch, self.ranks.world_size, self.ranks.rank)
        trainer.model.random.row_offset = lo
        self.grad_factor = self.ranks.world_size * (hi - lo) / batch
        return positions[..., lo:hi]

    def forward(self, trainer: "Trainer", x: torch.Tensor) -> torch.Tensor:
        """The population's training forward pass through DDP (rebuilt after a compaction changed the shapes)."""
        if _param_shapes(trainer.model) != self._shapes:
            # the old reducer holds each parameter's gradient accumulator, which remembers the old shape: free it
            # (and its reference cycles) before the new wrapper makes fresh ones
            self.ddp = None
            gc.collect()
            self._wrap(trainer.model, trainer.device)
        return self.ddp(x)

    @staticmethod
    def sum_over_ranks(*tensors: torch.Tensor) -> list[torch.Tensor]:
        """The tensors summed over every rank (one all-reduce)."""
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat)
        out, start = [], 0
        for t in tensors:
            out.append(flat[start:start + t.numel()].view_as(t).to(t.dtype))
            start += t.numel()
        return out

    def check_agreement(self, trainer: "Trainer") -> None:
        """End the job with one line if the ranks' early-stopping state (per member: stopped, diverged, best epoch,
        patience left) or member count differ; equal on every rank by construction, checked with one all-reduce."""
        import torch.distributed as dist

        s = trainer.state
        weight = torch.arange(1, trainer.members + 1, dtype=torch.float64)  # position-weighted sums: a fixed size
        per_member = torch.tensor([[float(a) for a in s.stopped], [-1.0 if d is None else float(d) for d in s.diverged_at],
                                   [float(e) for e in s.best_epoch], [float(w) for w in s.wait]], dtype=torch.float64)
        mine = torch.cat([torch.tensor([float(trainer.members)], dtype=torch.float64), per_member @ weight])
        both = torch.stack([mine, -mine]).to(trainer.device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        if not torch.equal(both[0], -both[1]):
            raise DistributedError(f"rank {self.ranks.rank}: the {self.ranks.world_size} processes disagree on the "
                                   f"early-stopping state after epoch {s.epoch} (members, stopped, best epochs); "
                                   "their validation figures differed")


def _param_shapes(model: torch.nn.Module) -> tuple:
    return tuple(tuple(p.shape) for p in model.parameters())


_LOCAL = contextvars.ContextVar("tamenet_fit_on_this_rank_only", default=False)


@contextlib.contextmanager
def this_rank_only() -> Iterator[None]:
    """Inside: `fit` trains in this process alone even under torchrun (e.g. a search's refit on rank 0 while the
    other ranks do something else; data-parallel `fit` is a collective every rank must enter)."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


def start(device: torch.device, ranks: Ranks | None = None) -> DataParallel | None:
    """This process's `DataParallel` under torchrun (the process group joined if not yet), None in a one-process
    job or inside `this_rank_only()`."""
    from .group import join, ranks_from_env

    ranks = ranks or ranks_from_env()
    if ranks is None or _LOCAL.get():
        return None
    join(ranks, device.type)
    return DataParallel(ranks)
