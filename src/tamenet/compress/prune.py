"""Unstructured pruning masks per member, the gradual schedule, and sparse storage (H1).

A mask keeps a weight (1) or removes it (0); member m's mask depends on member m's weights,
sparsity and seed only, so a population of sparsities equals their separate runs.

- *Magnitude*, layer-wise: in each tensor remove the k = floor(s n) weights of smallest |w|;
  *global*: rank all of a member's prunable weights together (layers then keep different shares).
- *Random*: remove k weights drawn from the member's own seed (the baseline of Frankle & Carbin).
- *Gradual*: the sparsity at step t rises from s_i to s_f over n steps as
  s_t = s_f + (s_i - s_f) (1 - (t - t_0) / n)^3 (Zhu & Gupta 2017): fast at first, when many
  weights are redundant, slowly at the end.
- *Storage*: compressed sparse rows with 32-bit indices, chosen only where it is smaller than
  the dense tensor (about below 50 % density for float32 values).

References: S. Han et al., "Learning both Weights and Connections for Efficient Neural
Networks", NIPS 2015; M. Zhu, S. Gupta, "To prune, or not to prune", 2017; J. Frankle,
M. Carbin, "The Lottery Ticket Hypothesis", ICLR 2019.
"""

from __future__ import annotations

import math

import torch

from ..nn.random import mix_seed

PRUNE_METHODS = ("magnitude", "random")
PRUNE_SCOPES = ("layer", "global")
RANDOM_PRUNE_STREAM = 2000  # the per-member random stream of random masks (input noise uses 1000)


def check_sparsity(sparsity: torch.Tensor | float) -> torch.Tensor:
    """Sparsities as a float tensor, refused unless each is in [0, 1)."""
    s = torch.as_tensor(sparsity, dtype=torch.float64)
    if torch.any(s < 0) or torch.any(s >= 1) or torch.any(torch.isnan(s)):
        raise ValueError(f"pruning sparsity must be in [0, 1), got {s.tolist()}")
    return s


def pruned_count(sparsity: torch.Tensor, n: int) -> torch.Tensor:
    """k = floor(s n) weights removed of n, per member (int64 [M])."""
    return torch.floor(check_sparsity(sparsity) * n + 1e-9).to(torch.int64)


def _keep_by_rank(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per member (rows of scores [M, n]): keep all but the k[m] lowest scores; exactly k[m] removed (ties by position)."""
    order = torch.argsort(scores, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return rank >= k.to(scores.device).unsqueeze(1)


def magnitude_masks(weights: list[torch.Tensor], sparsity: torch.Tensor | float, *, scope: str = "layer") -> list[torch.Tensor]:
    """Masks (bool, shaped like each population weight [M, ...]) removing the smallest |w| per member."""
    if scope not in PRUNE_SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; expected one of {list(PRUNE_SCOPES)}")
    members = weights[0].shape[0]
    s = _per_member(sparsity, members)
    flat = [w.detach().abs().reshape(members, -1) for w in weights]
    if scope == "layer":
        keeps = [_keep_by_rank(f, pruned_count(s, f.shape[1])) for f in flat]
    else:
        together = _keep_by_rank(torch.cat(flat, dim=1), pruned_count(s, sum(f.shape[1] for f in flat)))
        keeps = list(torch.split(together, [f.shape[1] for f in flat], dim=1))
    return [keep.reshape(w.shape) for keep, w in zip(keeps, weights)]


def random_masks(weights: list[torch.Tensor], sparsity: torch.Tensor | float, seeds: list[int]) -> list[torch.Tensor]:
    """Masks removing floor(s n) weights of each tensor at random, from each member's own seed."""
    members = weights[0].shape[0]
    if len(seeds) != members:
        raise ValueError(f"random pruning needs one seed per member ({members}), got {len(seeds)}")
    s = _per_member(sparsity, members)
    masks = []
    for layer, w in enumerate(weights):
        n = w[0].numel()
        scores = torch.stack([
            torch.rand(n, generator=torch.Generator().manual_seed(mix_seed(seed, RANDOM_PRUNE_STREAM, layer)),
                       dtype=torch.float64)
            for seed in seeds])
        masks.append(_keep_by_rank(scores, pruned_count(s, n)).reshape(w.shape).to(w.device))
    return masks


def _per_member(sparsity: torch.Tensor | float, members: int) -> torch.Tensor:
    s = check_sparsity(sparsity)
    if s.dim() == 0:
        return s.expand(members)
    if s.shape != (members,):
        raise ValueError(f"one sparsity per member ({members}) or a single one, got shape {tuple(s.shape)}")
    return s


def gradual_sparsity(step: int, *, final: float, start_step: int, steps: int, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule: s_t = s_f + (s_i - s_f)(1 - (t - t_0)/n)^3, clamped to [t_0, t_0 + n]."""
    check_sparsity(torch.tensor([initial, final]))
    if steps < 1:
        raise ValueError(f"a gradual pruning schedule needs at least 1 step, got {steps}")
    progress = min(max((step - start_step) / steps, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def density(mask: torch.Tensor) -> float:
    return mask.float().mean().item()


def dense_bytes(values: torch.Tensor) -> int:
    return values.numel() * values.element_size()


def csr_bytes(rows: int, nonzero: int, element_size: int) -> int:
    """Bytes of CSR storage with 32-bit indices: values, column indices and rows + 1 row pointers."""
    return nonzero * (element_size + 4) + (rows + 1) * 4


def to_storage(weight: torch.Tensor) -> dict:
    """The smaller of dense and CSR (int32 indices) for one tensor, viewed as rows of its last axis."""
    matrix = weight.detach().reshape(-1, weight.shape[-1]) if weight.dim() > 1 else weight.detach().reshape(1, -1)
    nonzero = int(torch.count_nonzero(matrix))
    if csr_bytes(matrix.shape[0], nonzero, matrix.element_size()) >= dense_bytes(matrix):
        return {"format": "dense", "shape": list(weight.shape), "values": weight.detach().clone()}
    rows, cols = torch.nonzero(matrix, as_tuple=True)  # row-major order, as CSR stores them
    counts = torch.bincount(rows, minlength=matrix.shape[0])
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
    return {"format": "csr", "shape": list(weight.shape), "values": matrix[rows, cols].clone(),
            "crow_indices": crow.to(torch.int32), "col_indices": cols.to(torch.int32)}


def from_storage(stored: dict) -> torch.Tensor:
    """The dense tensor back from `to_storage`, exactly."""
    shape = tuple(stored["shape"])
    if stored["format"] == "dense":
        return stored["values"].clone()
    if stored["format"] != "csr":
        raise ValueError(f"unknown sparse storage format {stored['format']!r}; expected 'dense' or 'csr'")
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    values = stored["values"]
    dense = torch.zeros(rows, shape[-1], dtype=values.dtype, device=values.device)
    counts = torch.diff(stored["crow_indices"].to(torch.int64))
    row_of = torch.repeat_interleave(torch.arange(rows, device=values.device), counts)
    dense[row_of, stored["col_indices"].to(torch.int64)] = values
    return dense.reshape(shape)


def storage_bytes(stored: dict) -> int:
    """Bytes a stored tensor takes (its values and indices)."""
    return sum(dense_bytes(stored[key]) for key in ("values", "crow_indices", "col_indices") if key in stored)
