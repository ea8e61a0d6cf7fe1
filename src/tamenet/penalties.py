"""Weight penalties as pure functions of parameters and per-member strengths (C1-C3).

Each returns a tensor [M]: the penalty of every member, added to that member's loss.
"""

from __future__ import annotations

import torch

from .config import PenaltyConfig, RecipeError
from .models import ParamRole


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
def l1_proximal_(targets: list[tuple[ParamRole, float]], threshold: torch.Tensor) -> None:
    """Soft thresholding after a gradient step: `w <- sign(w) * max(|w| - lr * lambda, 0)` (ISTA).

    `threshold` [M] is lr * lambda per member; weights inside the band become exact zeros.
    """
    for role, scale in targets:
        p = role.per_member(role.param.data)
        t = (threshold * scale).view(-1, *([1] * (p.dim() - 1)))
        p.copy_(torch.sign(p) * torch.clamp_min(p.abs() - t, 0.0))


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
