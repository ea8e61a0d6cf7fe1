"""Weight penalties as pure functions of parameters and per-member strengths (C1-C4).

Each returns a tensor [M]: the penalty of every member, added to that member's loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .config import PenaltyConfig, RecipeError, SharingGroup
from .models import ParamRole
from .registry import lookup


def penalized(roles: list[ParamRole], cfg: PenaltyConfig) -> list[tuple[ParamRole, float]]:
    """The parameters a penalty acts on, with their per-layer multipliers.

    Weights always; biases and normalization parameters only when asked (C3). `layer_scale[l]`
    multiplies the strength for weight layer l (input first), e.g. weak first layer, strong output.
    """
    layers = 1 + max((r.layer for r in roles if r.role == "weight"), default=0)
    scale = cfg.layer_scale or [1.0] * layers
    if len(scale) != layers:
        raise RecipeError(f"penalty.layer_scale: expected {layers} multipliers (one per weight layer), got {len(scale)}")
    keep = {"weight": True, "bias": cfg.penalize_bias, "norm": cfg.penalize_norm}
    return [(r, float(scale[min(r.layer, layers - 1)])) for r in roles if keep[r.role]]


def _sum_per_member(role: ParamRole, values: torch.Tensor) -> torch.Tensor:
    return role.per_member(values).flatten(1).sum(1)


def l2_penalty(targets: list[tuple[ParamRole, float]], strength: torch.Tensor, *, form: str = "half") -> torch.Tensor:
    """`lambda/2 * sum ||w||^2` (gradient `lambda * w`, seed 002), or `lambda * sum ||w||^2` with form='full'."""
    total = sum(scale * _sum_per_member(r, r.param.square()) for r, scale in targets)
    factor = 0.5 if form == "half" else 1.0
    return factor * strength * total


def l1_penalty(targets: list[tuple[ParamRole, float]], strength: torch.Tensor) -> torch.Tensor:
    """`lambda * sum |w|` (Laplace prior; its subgradient is `lambda * sign(w)`)."""
    total = sum(scale * _sum_per_member(r, r.param.abs()) for r, scale in targets)
    return strength * total


@torch.no_grad()
def add_penalty_gradients_(
    targets: list[tuple[ParamRole, float]],
    *,
    l2: torch.Tensor | None = None,
    l1: torch.Tensor | None = None,
    form: str = "half",
) -> None:
    """Add the penalties' gradients straight to `.grad`: `l2 * w` (`2 l2 w` for form='full') and `l1 * sign(w)`.

    The same gradients as putting `l2_penalty` / `l1_penalty` in the loss, without building their
    autograd graph: one fused op per tensor instead of a square, a sum and their backward.
    """
    factor = 1.0 if form == "half" else 2.0
    for role, scale in targets:
        p, g = role.per_member(role.param.data), role.param.grad
        if g is None:
            continue
        g = role.per_member(g)
        shape = (-1, *([1] * (p.dim() - 1)))
        if l2 is not None:
            g.addcmul_(p, (l2 * (scale * factor)).to(p.dtype).view(shape))
        if l1 is not None:
            g.addcmul_(torch.sign(p), (l1 * scale).to(p.dtype).view(shape))


@torch.no_grad()
def l1_proximal_(
    targets: list[tuple[ParamRole, float]],
    threshold: torch.Tensor,
    factors: Sequence[torch.Tensor | float] | None = None,
) -> None:
    """Soft thresholding after an optimizer step: `w <- sign(w) * max(|w| - t, 0)`, exact zeros inside the band.

    `t = threshold * layer_scale * factor` per parameter: `threshold` [M] is `lr * lambda` per member,
    `factors[k]` (broadcastable to `targets[k]`'s parameter; None: all 1) the optimizer's `P^-1`
    (`PopulationOptimizer.l1_scales`). With `P = 1` (plain SGD) this is ISTA (Beck & Teboulle, "A fast
    iterative shrinkage-thresholding algorithm", SIAM J. Imaging Sci. 2009); for a step
    `w - lr P^-1 g` it is the proximal map of `lambda ||w||_1` in the metric `P` (proximal quasi-Newton,
    Lee, Sun & Saunders, SIAM J. Optim. 2014), whose fixed points satisfy `0 in g + lambda d|w|`, the
    lasso condition, whatever the optimizer (see `tamenet.train.optim`).
    """
    if factors is not None and len(factors) != len(targets):
        raise ValueError(f"l1_proximal_: expected one factor per penalized parameter ({len(targets)}), got {len(factors)}")
    for k, (role, scale) in enumerate(targets):
        p = role.per_member(role.param.data)
        t = (threshold * scale).view(-1, *([1] * (p.dim() - 1)))
        factor = 1.0 if factors is None else factors[k]
        if not (isinstance(factor, float) and factor == 1.0):
            t = t * factor
        p.copy_(torch.sign(p) * torch.clamp_min(p.abs() - t, 0.0))


@dataclass(frozen=True)
class SharingSet:
    """One group G_k of soft weight sharing: whole tensors of equal shape (`units` None), or units of one layer."""

    roles: tuple[ParamRole, ...]
    units: torch.Tensor | None = None  # unit (output) indices into the single layer roles[0]


def unit_axis(role: ParamRole) -> int:
    """The one axis of the [M, ...] view that counts units (the axis not in `fan_in_dims`); an error if there is none."""
    dims = role.per_member(role.param).dim()
    axes = [d for d in range(1, dims) if d not in role.fan_in_dims]
    if len(axes) != 1:
        raise RecipeError(f"'{role.name}' (shape {tuple(role.param.shape)}) has no single axis of units")
    return axes[0]


def _role(table: dict[str, ParamRole], name, where: str) -> ParamRole:
    try:
        return lookup(table, name, f"layer in {where}")
    except ValueError as err:
        raise RecipeError(str(err)) from None


def sharing_sets(groups: list[SharingGroup], roles: list[ParamRole]) -> list[SharingSet]:
    """Check `penalty.sharing_groups` against the model's parameters: each group is `layers` (>= 2 tensors
    of equal shape) or `layer` with `units` (>= 2 distinct output indices of one weight layer)."""
    table = {r.name: r for r in roles}
    out = []
    for k, group in enumerate(groups):
        where = f"penalty.sharing_groups[{k}]"
        if (group.layers is None) == (group.layer is None) or (group.layers is not None and group.units is not None):
            raise RecipeError(f"{where}: expected either 'layers' (whole tensors) or 'layer' with 'units', got {group}")
        if group.layers is not None:
            if len(group.layers) < 2 or len(set(group.layers)) != len(group.layers):
                raise RecipeError(f"{where}.layers: expected at least two different layer names, got {group.layers}")
            members = tuple(_role(table, n, f"{where}.layers") for n in group.layers)
            shapes = {tuple(r.param.shape) for r in members}
            if len(shapes) != 1:
                listed = ", ".join(f"'{r.name}' {tuple(r.param.shape)}" for r in members)
                raise RecipeError(f"{where}.layers: whole tensors shared softly need equal shapes, got {listed}")
            out.append(SharingSet(members))
            continue
        role = _role({n: r for n, r in table.items() if r.role == "weight"}, group.layer, f"{where}.layer")
        axis = unit_axis(role)
        n_units = role.per_member(role.param).shape[axis]
        units = group.units or []
        if len(units) < 2 or len(set(units)) != len(units) or not all(0 <= u < n_units for u in units):
            raise RecipeError(
                f"{where}.units: expected at least two different unit indices in [0, {n_units}) of '{role.name}', got {units}"
            )
        out.append(SharingSet((role,), torch.tensor(units, dtype=torch.long, device=role.param.device)))
    return out


def _group_matrix(s: SharingSet, values: list[torch.Tensor]) -> torch.Tensor:
    """[M, n, D]: the group's n weight vectors w_i of each member, flattened."""
    if s.units is None:
        return torch.stack([r.per_member(v).flatten(1) for r, v in zip(s.roles, values)], dim=1)
    role, axis = s.roles[0], unit_axis(s.roles[0])
    return role.per_member(values[0]).index_select(axis, s.units).movedim(axis, 1).flatten(2)


def soft_sharing_penalty(sets: list[SharingSet], strength: torch.Tensor) -> torch.Tensor:
    """`lambda * sum_k sum_{i<j in G_k} ||w_i - w_j||^2` [M], without the pairwise loop:

    `sum_{i<j} ||w_i - w_j||^2 = n * sum_i ||w_i - mean||^2` for a group of n vectors with mean `mean`
    (expand the squares: both sides are `n sum_i ||w_i||^2 - ||sum_i w_i||^2`). Nowlan & Hinton,
    "Simplifying neural networks by soft weight-sharing", Neural Computation 1992.
    """
    total = torch.zeros_like(strength)
    for s in sets:
        w = _group_matrix(s, [r.param for r in s.roles])
        centred = w - w.mean(dim=1, keepdim=True)
        total = total + w.shape[1] * centred.square().sum(dim=(1, 2)).to(strength.dtype)
    return strength * total


@torch.no_grad()
def add_soft_sharing_gradients_(sets: list[SharingSet], strength: torch.Tensor) -> None:
    """Add `d/dw_i = 2 lambda n (w_i - mean)` of `soft_sharing_penalty` straight to `.grad`."""
    for s in sets:
        if any(r.param.grad is None for r in s.roles):
            continue
        w = _group_matrix(s, [r.param.data for r in s.roles])
        n = w.shape[1]
        grad = (w - w.mean(dim=1, keepdim=True)).mul_((2.0 * n) * strength.to(w.dtype).view(-1, 1, 1))
        if s.units is None:
            for i, r in enumerate(s.roles):
                r.per_member(r.param.grad).add_(grad[:, i].view_as(r.per_member(r.param.grad)))
            continue
        role, axis = s.roles[0], unit_axis(s.roles[0])
        g = role.per_member(role.param.grad)
        rest = [g.shape[d] for d in range(1, g.dim()) if d != axis]
        g.index_add_(axis, s.units, grad.view(g.shape[0], n, *rest).movedim(1, axis))


def sparsity(roles: list[ParamRole]) -> dict[str, float]:
    """Share of exact zeros in each weight tensor (over all members), and overall."""
    report, zeros, total = {}, 0, 0
    for r in roles:
        if r.role != "weight":
            continue
        n_zero = int((r.param == 0).sum())
        report[r.name] = n_zero / r.param.numel()
        zeros, total = zeros + n_zero, total + r.param.numel()
    report["all_weights"] = zeros / max(total, 1)
    return report


# ----------------------------------------------------------------- pieces of the training step (`tamenet.train.step`)
class PenaltyGradients:
    """Gradient transform (C1, C2): `l2 * w` (`2 l2 w` for the full form) and, when L1 is a subgradient
    (`penalty.l1_mode: subgradient`), `l1 * sign(w)` added to the penalized parameters' gradients, per member."""

    def begin_epoch(self, trainer) -> bool:
        hyper = trainer.hyper
        self.l2 = bool((hyper["l2"] > 0).any())
        self.l1 = bool((hyper["l1"] > 0).any()) and trainer.recipe.penalty.l1_mode != "proximal"
        return self.l2 or self.l1

    def __call__(self, trainer) -> None:
        add_penalty_gradients_(
            trainer.penalized,
            l2=trainer.hyper["l2"] if self.l2 else None,
            l1=trainer.hyper["l1"] if self.l1 else None,
            form=trainer.recipe.penalty.l2_form,
        )


class SoftSharingGradients:
    """Gradient transform (C4): the soft weight-sharing penalty's gradient over `penalty.sharing_groups`."""

    def begin_epoch(self, trainer) -> bool:
        return bool(trainer.sharing) and bool((trainer.hyper["soft_sharing"] > 0).any())

    def __call__(self, trainer) -> None:
        add_soft_sharing_gradients_(trainer.sharing, trainer.hyper["soft_sharing"])


class L1Proximal:
    """Projection (C2, `penalty.l1_mode: proximal`): soft thresholding after the optimizer step."""

    def begin_epoch(self, trainer) -> bool:
        return bool((trainer.hyper["l1"] > 0).any()) and trainer.recipe.penalty.l1_mode == "proximal"

    def __call__(self, trainer, lr: torch.Tensor) -> None:
        # the threshold in the optimizer's own metric, so the fixed point is the lasso whatever the optimizer
        l1_proximal_(trainer.penalized, lr * trainer.hyper["l1"], trainer.optimizer.l1_scales(r for r, _ in trainer.penalized))


# ----------------------------------------------------------------- network slimming (H1)
def batch_norm_gammas(model: torch.nn.Module) -> list[torch.Tensor]:
    """The gamma multipliers [M, C] of every population BatchNorm in `model`: network slimming's targets."""
    from .nn import BatchNorm

    return [m.weight for m in model.modules() if isinstance(m, BatchNorm)]


def bn_l1_penalty(gammas: list[torch.Tensor], strength: torch.Tensor) -> torch.Tensor:
    """`lambda * sum |gamma|` [M] over the BatchNorm multipliers (network slimming; Liu et al., "Learning
    efficient convolutional networks through network slimming", ICCV 2017); subgradient `lambda * sign(gamma)`."""
    total = sum(g.abs().sum(1) for g in gammas)
    return strength * total


@torch.no_grad()
def add_bn_l1_gradients_(gammas: list[torch.Tensor], strength: torch.Tensor) -> None:
    """Add `lambda_m * sign(gamma)` to each BatchNorm gamma's `.grad` [M, C] (member m's strength on row m)."""
    for gamma in gammas:
        if gamma.grad is not None:
            gamma.grad.addcmul_(torch.sign(gamma), strength.to(gamma.dtype).view(-1, 1))


class BatchNormL1Gradients:
    """Gradient transform (H1, `penalty.bn_l1`): network slimming's `lambda * sign(gamma)` on the BatchNorm
    gammas only, per member; the channels with the smallest |gamma| are then cut (`compress.structured`)."""

    def check(self, trainer) -> None:
        if bool((trainer.hyper["bn_l1"] > 0).any()) and not batch_norm_gammas(trainer.model):
            raise RecipeError(f"penalty.bn_l1: network slimming acts on BatchNorm gammas; expected model.norm: batch, "
                              f"got model.norm: {trainer.recipe.model.norm}")

    def begin_epoch(self, trainer) -> bool:
        return bool((trainer.hyper["bn_l1"] > 0).any())

    def __call__(self, trainer) -> None:
        # the gammas are read at each call: compaction may have replaced the model's tensors
        add_bn_l1_gradients_(batch_norm_gammas(trainer.model), trainer.hyper["bn_l1"])
