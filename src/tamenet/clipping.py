"""Gradient transforms per member (G1), pure functions of gradients, parameters and thresholds [M].

Each member's gradients are transformed as if it trained alone: norms never mix members.
"""

from __future__ import annotations

import torch

from .models import ParamRole


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


def global_norm(roles: list[ParamRole], grads: list[torch.Tensor]) -> torch.Tensor:
    """`||g||_2` over all of a member's gradients: [M]."""
    return torch.sqrt(sum(r.per_member(g).flatten(1).square().sum(1) for r, g in zip(roles, grads)))


def clip_by_norm(roles: list[ParamRole], grads: list[torch.Tensor], max_norm: torch.Tensor) -> list[torch.Tensor]:
    """`g <- g * min(1, lambda / ||g||)`: the step keeps its direction, its length is at most lambda (seed 002).

    Matches `torch.nn.utils.clip_grad_norm_` per member (same 1e-6 guard).
    """
    factor = torch.clamp(max_norm / (global_norm(roles, grads) + 1e-6), max=1.0)
    return [r.per_member(g).mul(_view(factor, r.per_member(g))).view_as(g) for r, g in zip(roles, grads)]


def clip_by_value(roles: list[ParamRole], grads: list[torch.Tensor], max_value: torch.Tensor) -> list[torch.Tensor]:
    """Each gradient component clamped to [-lambda, lambda]."""
    out = []
    for r, g in zip(roles, grads):
        gm = r.per_member(g)
        bound = _view(max_value, gm)
        out.append(torch.maximum(torch.minimum(gm, bound), -bound).view_as(g))
    return out


def _unit_norm(t: torch.Tensor, fan_in_dims: tuple[int, ...]) -> torch.Tensor:
    """Norm of each unit's incoming weights (kept dims); a member's 1-D tensor (bias, gain) is one unit, as in NFNets."""
    return torch.linalg.vector_norm(t, dim=fan_in_dims, keepdim=True)


def adaptive_clip(
    roles: list[ParamRole], grads: list[torch.Tensor], clip: torch.Tensor, *, eps: float = 1e-3
) -> list[torch.Tensor]:
    """Unit-wise adaptive clipping: `g_i <- g_i * min(1, lambda * max(||w_i||, eps) / ||g_i||)`.

    The threshold is relative to the weight norm of unit i (Brock et al., "High-performance
    large-scale image recognition without normalization", ICML 2021; seed 002).
    """
    out = []
    for r, g in zip(roles, grads):
        gm, wm = r.per_member(g), r.per_member(r.param.detach())
        max_norm = _view(clip, gm) * _unit_norm(wm, r.fan_in_dims).clamp_min(eps)
        g_norm = _unit_norm(gm, r.fan_in_dims).clamp_min(1e-6)
        out.append((gm * torch.clamp(max_norm / g_norm, max=1.0)).view_as(g))
    return out


CLIPPERS = {
    "norm": lambda roles, grads, t, eps: clip_by_norm(roles, grads, t),
    "value": lambda roles, grads, t, eps: clip_by_value(roles, grads, t),
    "adaptive": lambda roles, grads, t, eps: adaptive_clip(roles, grads, t, eps=eps),
}
"""Clip name -> transform(roles, grads, threshold [M], eps)."""


class ClipGradients:
    """Gradient transform (G1): `train.clip.by` (norm, value or adaptive) at each member's threshold `train.clip.max`."""

    def __init__(self, by: str, eps: float) -> None:
        self.clip, self.eps = CLIPPERS[by], eps

    def begin_epoch(self, trainer) -> bool:
        return True

    def __call__(self, trainer) -> None:
        live = [r for r in trainer.roles if r.param.grad is not None]  # tied copies have none
        grads = self.clip(live, [r.param.grad for r in live], trainer.hyper["clip"], self.eps)
        for r, g in zip(live, grads):
            r.param.grad = g
