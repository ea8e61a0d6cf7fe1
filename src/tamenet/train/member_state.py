"""What each member owns, handled by one protocol: the best-weight snapshot, compaction and checkpoints.

A population declares its member tensors (`Population.member_tensors`: parameters, and buffers its
modules list in `member_buffers`); the optimizer, the loop state, the rows and every step piece
that holds per-member state compact themselves with `keep_members_(index)` (see `Trainer.keep_members`).
A user's own module (`Wrapped`, a population of one, `stacked = False`) owns all of its tensors.
"""

from __future__ import annotations

import torch

from ..models import Population


def snapshot(model: Population) -> dict[str, torch.Tensor]:
    """A detached copy of every member tensor."""
    return {name: t.detach().clone() for name, t in model.member_tensors().items()}


@torch.no_grad()
def keep_improved_(best: dict[str, torch.Tensor], model: Population, improved: torch.Tensor) -> None:
    """Copy the current value of the members that improved ([M] bool) into `best`, the others' stay."""
    for name, t in model.member_tensors().items():
        if not model.stacked:  # one member, tensors without a member axis
            if bool(improved[0]):
                best[name] = t.detach().clone()
            continue
        mask = improved.to(t.device).view(-1, *([1] * (t.dim() - 1)))
        best[name] = torch.where(mask, t.detach(), best[name])


@torch.no_grad()
def restore_(model: Population, best: dict[str, torch.Tensor]) -> None:
    """Load every member tensor from `best`."""
    for name, t in model.member_tensors().items():
        t.copy_(best[name])


def compact(best: dict[str, torch.Tensor], index: torch.Tensor, *, stacked: bool = True) -> dict[str, torch.Tensor]:
    """A snapshot of the members at `index` only."""
    if not stacked:
        return best
    return {name: t[index.to(t.device)].clone() for name, t in best.items()}
