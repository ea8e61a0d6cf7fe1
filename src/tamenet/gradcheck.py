"""Check a model's autograd gradients against central finite differences (SPEC A2).

For a sample of parameter entries w_i the numerical derivative of the member-summed loss is

    g_n = (L(w + eps e_i) - L(w - eps e_i)) / (2 eps)        (error O(eps^2))

and each entry is scored by the relative error `|g_a - g_n| / max(|g_a| + |g_n|, 1e-12)` against the
autograd gradient g_a (as in the CS231n notes on gradient checks; Goodfellow et al., Deep Learning,
2016, section 11.5). The check runs on a deep copy of the model in float64 and in eval mode: dropout is off
and BatchNorm uses its running statistics, so L is a deterministic function of w. The user's model is
left untouched. Entries near a kink (ReLU at 0) may show a large error that is not a bug. Each
entry costs two forward passes; for small models `torch.set_num_threads(1)` makes them much faster.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .models import Population
from .train.losses import TASK_METRIC, member_loss

DEFAULT_TOLERANCE = 1e-5
"""Largest relative error for `ok`: float64 central differences with eps = 1e-6 usually reach 1e-7..1e-9."""


@dataclass(frozen=True)
class EntryCheck:
    """One checked parameter entry: its index in the parameter, both gradients and their relative error."""

    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    rel_error: float


@dataclass(frozen=True)
class GradCheckReport:
    """Outcome of `gradient_check`: the largest relative error overall and per parameter name."""

    max_rel_error: float
    per_parameter: dict[str, float]
    checked: dict[str, int]
    worst: EntryCheck | None
    entries: list[EntryCheck] = field(repr=False)
    tolerance: float = DEFAULT_TOLERANCE
    eps: float = 1e-6

    @property
    def ok(self) -> bool:
        """True when every checked entry has a relative error below the tolerance."""
        return self.max_rel_error < self.tolerance

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        lines = [f"gradient check {verdict}: max relative error {self.max_rel_error:.2e} (tolerance {self.tolerance:.0e})"]
        width = max((len(n) for n in self.per_parameter), default=0)
        for name, err in self.per_parameter.items():
            flag = "" if err < self.tolerance else "  <-"
            lines.append(f"  {name:<{width}}  {err:.2e}  ({self.checked[name]} entries){flag}")
        if self.worst is not None and not self.ok:
            w = self.worst
            lines.append(f"  worst: {w.name}{list(w.index)} autograd {w.analytic:.6e} vs numeric {w.numeric:.6e}")
        return "\n".join(lines)


def _relative_error(analytic: float, numeric: float) -> float:
    """`|g_a - g_n| / max(|g_a| + |g_n|, 1e-12)`; infinite when either is not finite."""
    if not (math.isfinite(analytic) and math.isfinite(numeric)):
        return math.inf
    return abs(analytic - numeric) / max(abs(analytic) + abs(numeric), 1e-12)


class _OneMember(nn.Module):
    """A plain module as a population of one, like `Wrapped`, but passing inputs of any shape through
    unchanged (images [B, C, H, W] included): outputs gain the member axis [1, B, ...]."""

    members = 1

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).unsqueeze(0)


def _as_population(model: nn.Module) -> tuple[nn.Module, str]:
    """The population to check and the prefix its parameter names carry beyond the user's names."""
    if isinstance(model, Population):
        return model, ""
    if isinstance(model, nn.Module):
        return _OneMember(model), "module."
    raise TypeError(f"model: expected a tamenet Population or a torch.nn.Module, got {type(model).__name__}")


def _stacked_params(model: nn.Module) -> set[int]:
    """ids of the parameters with a leading member axis (per the model's parameter roles)."""
    if not isinstance(model, Population):
        return set()
    try:
        return {id(r.param) for r in model.param_roles() if r.stacked}
    except NotImplementedError:
        return set()


def _sample_entries(
    param: torch.Tensor, *, stacked: bool, members: list[int], samples: int, generator: torch.Generator
) -> list[tuple[int, ...]]:
    """Indices of up to `samples` entries; for a stacked parameter only in the chosen members' slices."""
    if stacked:
        per_member = math.prod(param.shape[1:])
        total = len(members) * per_member
    else:
        total = param.numel()
    picks = range(total) if total <= samples else torch.randperm(total, generator=generator)[:samples].tolist()
    out = []
    for flat in sorted(picks):
        if stacked:
            member, rest = divmod(flat, per_member)
            idx = (members[member], *_unravel(rest, tuple(param.shape[1:])))
        else:
            idx = _unravel(flat, tuple(param.shape))
        out.append(idx)
    return out


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    idx = []
    for size in reversed(shape):
        flat, r = divmod(flat, size)
        idx.append(r)
    return tuple(reversed(idx))


def _check_members(members: list[int] | None, count: int) -> list[int]:
    if members is None:
        return list(range(count))
    if isinstance(members, int) or not all(isinstance(m, int) and not isinstance(m, bool) for m in members):
        raise TypeError(f"members: expected a list of member indices, got {members!r}")
    members = list(members)
    if not members or any(not 0 <= m < count for m in members) or len(set(members)) != len(members):
        raise ValueError(f"members: expected distinct indices in [0, {count}), got {members}")
    return members


def gradient_check(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str,
    eps: float = 1e-6,
    members: list[int] | None = None,
    samples: int = 20,
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
) -> GradCheckReport:
    """Compare autograd with central differences on the loss `sum_{m in members} member_loss(model(x), y)[m]`.

    model: a Population, with x [B, F] or [M, B, F]; or any nn.Module, checked as a population of one
    (outputs [1, B, K], as with `Wrapped`) on inputs of any shape it accepts. y: class indices
    (classification) or targets (regression), [B] or [M, B]. Up to `samples` entries per parameter
    tensor (all of them when it has no more) are drawn with `seed`; for a parameter with a member axis
    only from the members in `members` (default: all). Returns a `GradCheckReport`; `report.ok` when
    its largest relative error is below `tolerance`.
    """
    if task not in TASK_METRIC:
        raise ValueError(f"task: expected one of {sorted(TASK_METRIC)}, got {task!r}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x, y: expected torch tensors, got {type(x).__name__} and {type(y).__name__}")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps: expected a positive step, got {eps!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples: expected a positive integer, got {samples!r}")

    population, prefix = _as_population(model)
    population = copy.deepcopy(population).double().eval()  # a copy: the user's model keeps its dtype and mode
    chosen = _check_members(members, population.members)
    x = x.detach().to(torch.float64) if x.is_floating_point() else x.detach()  # token ids stay integers
    y = y.detach().to(torch.float64) if task == "regression" else y.detach()
    if task == "classification" and (y.is_floating_point() or y.is_complex()):
        raise TypeError(f"y: expected integer class indices for classification, got dtype {y.dtype}")

    def loss() -> torch.Tensor:
        return member_loss(population(x), y, task)[chosen].sum()

    params = [(name, p) for name, p in population.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: expected at least one trainable parameter, got none")
    population.zero_grad(set_to_none=True)
    loss().backward()
    stacked = _stacked_params(population)
    generator = torch.Generator().manual_seed(seed)

    entries: list[EntryCheck] = []
    per_parameter: dict[str, float] = {}
    checked: dict[str, int] = {}
    with torch.no_grad():
        for full_name, p in params:
            name = full_name[len(prefix):] if prefix and full_name.startswith(prefix) else full_name
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            worst = 0.0
            picks = _sample_entries(p, stacked=id(p) in stacked, members=chosen, samples=samples, generator=generator)
            for idx in picks:
                original = p[idx].item()
                p[idx] = original + eps
                up = loss().item()
                p[idx] = original - eps
                down = loss().item()
                p[idx] = original
                numeric = (up - down) / (2 * eps)
                analytic = grad[idx].item()
                err = _relative_error(analytic, numeric)
                entries.append(EntryCheck(name, idx, analytic, numeric, err))
                worst = max(worst, err)
            per_parameter[name], checked[name] = worst, len(picks)
    top = max(entries, key=lambda e: e.rel_error) if entries else None
    return GradCheckReport(
        max_rel_error=top.rel_error if top else 0.0,
        per_parameter=per_parameter,
        checked=checked,
        worst=top,
        entries=entries,
        tolerance=tolerance,
        eps=eps,
    )
