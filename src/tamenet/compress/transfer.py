"""L2-SP: soft transfer as a pull toward the source weights (H4; Li, Grandvalet, Davoine 2018).

For the layers copied from a source network (weights w_s) and the new head:

    Omega(w) = alpha/2 ||w - w_s||^2  (copied layers)  +  beta/2 ||w_head||^2  (the head),

per member, alpha and beta tensors [M]. Plain L2 pulls every weight toward 0 and so forgets
what the source learned; L2-SP pulls the copied ones toward where the source left them.
Its gradient, added to the loss's: alpha (w - w_s) on copied weights and beta w on the head.

Reference: X. Li, Y. Grandvalet, F. Davoine, "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks", ICML 2018 (arXiv:1802.01483), equation 3.
"""

from __future__ import annotations

import torch


def _per_member(strength: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return strength.to(t.dtype).to(t.device).reshape(-1, *([1] * (t.dim() - 1)))


def _check(alpha: torch.Tensor, beta: torch.Tensor) -> None:
    if torch.any(alpha < 0) or torch.any(beta < 0):
        raise ValueError(f"L2-SP strengths must be >= 0, got alpha {alpha.tolist()} and beta {beta.tolist()}")


def l2_sp_penalty(copied: list[tuple[torch.Tensor, torch.Tensor]], head: list[torch.Tensor], *,
                  alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Omega per member [M]: copied is (w [M, ...], w_source [M, ...] or [...]) pairs, head the new weights [M, ...]."""
    _check(alpha, beta)
    members = alpha.shape[0]
    terms = [0.5 * alpha.to(w.device, w.dtype) * (w - source).pow(2).reshape(members, -1).sum(1) for w, source in copied]
    terms += [0.5 * beta.to(w.device, w.dtype) * w.pow(2).reshape(members, -1).sum(1) for w in head]
    return torch.stack(terms).sum(0) if terms else torch.zeros(members, dtype=alpha.dtype, device=alpha.device)


@torch.no_grad()
def add_l2_sp_gradients_(copied: list[tuple[torch.nn.Parameter, torch.Tensor]], head: list[torch.nn.Parameter], *,
                         alpha: torch.Tensor, beta: torch.Tensor) -> None:
    """Add Omega's gradient in place: alpha (w - w_s) to the copied weights' .grad, beta w to the head's."""
    _check(alpha, beta)
    for w, source in copied:
        w.grad.add_(_per_member(alpha, w) * (w - source))
    for w in head:
        w.grad.add_(_per_member(beta, w) * w)
