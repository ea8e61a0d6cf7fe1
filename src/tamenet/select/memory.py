"""How much memory a population needs, and how many members fit in a budget (X1: chunking).

A cross-validation or search population holds, per member: parameters, gradients, the optimizer's
state, the best-weights copy (and one more copy while members are scored), the activations autograd
keeps for one training batch, the member's gathered batch and stopping set, and its row indices.
The per-fold scaled copies of the pool are shared by the members of a fold. The optimizer state and
the activations are *measured* on a one-member model (one forward and backward pass on a batch of
zeros, counting the tensors autograd saves), so the estimate follows the model and recipe as built.

When the population does not fit in the budget its members are split into chunks trained one after
another. Member m's randomness (initial weights, batch order, dropout masks, input noise) depends
only on its own seed, so the chunked results equal the unchunked ones.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from ..config import Recipe
from ..recipes import select_members
from ..models import build_model
from ..train.hyper import member_hyper, member_seeds
from ..train.loop import batch_size_of
from ..train.optim import make_optimizer
from .options import MEMORY_ENV

MEMORY_SHARE = 0.5
"""Default budget: this share of the machine's physical memory."""
FLOAT, INDEX = 4, 8  # bytes of a float32 value and of an int64 row index

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


def parse_size(text: str | int, *, where: str = "--max-memory") -> int:
    """`2GB`, `512MB`, `1.5g`, `1000000` (bytes) -> bytes; units are powers of 1024."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        match = _SIZE.fullmatch(str(text))
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValueError(f"{where}: expected a size such as 2GB, 512MB or a number of bytes, got {text!r}")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"{where}: expected a positive size, got {text!r}")
    return size


def physical_memory() -> int:
    """Bytes of physical memory (`os.sysconf`); 8 GiB where the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


def memory_budget(max_memory: str | int | None = None) -> int:
    """The budget in bytes: `max_memory`, else $TAMENET_MAX_MEMORY, else half the physical memory."""
    if max_memory is not None:
        return parse_size(max_memory)
    if os.environ.get(MEMORY_ENV):
        return parse_size(os.environ[MEMORY_ENV], where=MEMORY_ENV)
    return int(MEMORY_SHARE * physical_memory())


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per member (by part) and bytes shared by all members (the per-fold copies of the pool)."""

    parameters: int  # weights and buffers with the member axis
    gradients: int  # and their clipped copies
    optimizer: int  # state, and the temporaries of a step
    best_weights: int  # the best-weights snapshot, and the copy kept while members are scored
    activations: int  # what autograd saves for one training batch, and their gradients in the backward pass
    data: int  # the gathered batch, the stopping set, row indices
    shared: int

    @property
    def per_member(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.best_weights + self.activations + self.data

    def total(self, members: int, copies: int = 1) -> int:
        return members * self.per_member + copies * self.shared

    def as_dict(self) -> dict[str, int]:
        names = ("parameters", "gradients", "optimizer", "best_weights", "activations", "data", "shared")
        return {**{n: getattr(self, n) for n in names}, "per_member": self.per_member}


def _one_member(recipe: Recipe) -> Recipe:

    return select_members(recipe, [0])


def estimate_memory(
    recipe: Recipe, *, n_in: int, n_out: int, n_pool: int, n_fit: int, n_stop: int, n_scored: int, task: str,
    input_shape: tuple[int, ...] | None = None,
) -> MemoryEstimate:
    """Per-member and shared bytes of a cross-validation population of `recipe` (any member count)."""
    single = _one_member(recipe)
    model = build_model(single.model, n_in=n_in, n_out=n_out, seeds=member_seeds(single)[:1],
                        input_shape=input_shape, prune=single.prune, quantize=single.quantize)
    owned = [t for t in [*model.parameters(), *model.buffers()] if t.dim() >= 1]
    weights = sum(t.numel() * t.element_size() for t in owned)
    roles = model.param_roles()
    grads = sum(r.param.numel() * r.param.element_size() for r in roles)
    tcfg = single.train
    optimizer = make_optimizer(tcfg.optimizer, roles, member_hyper(single), eps=tcfg.eps, nesterov=tcfg.nesterov)
    batch = batch_size_of(single, n_fit)
    saved: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:  # every tensor autograd keeps for the backward pass, once
        key = (t.untyped_storage().data_ptr(), t.shape, t.stride())
        saved[key] = t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(torch.zeros(1, batch, n_in))
    target = torch.zeros(1, batch, dtype=torch.long) if task == "classification" else torch.zeros(1, batch)
    from ..train.losses import member_loss

    member_loss(out, target, task).sum().backward()
    optimizer.step(torch.zeros(1))
    state = sum(v.numel() * v.element_size() for s in optimizer.state for v in s.values())
    activations = sum(saved.values()) + 2 * out.numel() * out.element_size()  # the output and its gradient
    data = (batch * (n_in * FLOAT + INDEX)  # the gathered batch and its targets
            + n_stop * (n_in * FLOAT + 2 * INDEX + FLOAT)  # the stopping set: rows, targets, indices, weights
            + n_fit * (n_in * FLOAT + 2 * INDEX)  # training row indices; their gather when the member is scored
            + n_scored * (n_in * FLOAT + 2 * INDEX + FLOAT))  # the scored rows, gathered once
    clipped = grads if tcfg.clip.by not in (None, "none") else 0  # clipping returns new gradient tensors
    # backward holds the gradients of the saved activations while it runs; the optimizer makes
    # temporaries the size of the weights: both counted once more
    return MemoryEstimate(weights, grads + clipped, state + weights, 2 * weights, 2 * activations, data,
                          n_pool * (n_in * FLOAT + INDEX))


def chunk_size(estimate: MemoryEstimate, *, members: int, group: int, copies: int, budget: int) -> int:
    """The most members per chunk (a multiple of `group` when the population has several groups) that fit.

    `group` is the number of members that must train together (a candidate's folds, for halving or
    per-trial pruning); at least one group is trained even when it alone exceeds the budget.
    """
    if estimate.total(members, copies) <= budget:
        return members
    fit = max(0, budget - copies * estimate.shared) // max(estimate.per_member, 1)
    return max(group, (fit // group) * group)


def format_size(size: int) -> str:
    """Bytes in the largest unit that keeps the number at or above 1 (e.g. `1.5 GiB`)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} TiB"
