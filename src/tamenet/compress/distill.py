"""Knowledge distillation's loss per member (H3), softmax with temperature (Hinton et al. 2015).

The teacher's logits z_t become soft targets q_t = softmax(z_t / T); the student's z_s is pulled
toward them and toward the hard labels y:

    L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(y, z_s).

The T^2 factor keeps the soft part's gradient of the same size as T grows: d/dz_s of
T^2 KL is T (q_s - q_t), which tends to ((z_s - mean z_s) - (z_t - mean z_t)) / C for large T,
the gradient of matching logits, 1/(2C) ||z_s - z_t||^2 for zero-mean logits (section 2.1).

T and alpha are tensors [M] (one per member), so temperatures and mixing shares are searched as
members of one population.

References: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network",
NIPS 2014 Deep Learning Workshop (arXiv:1503.02531), sections 2 and 2.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(teacher_logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """softmax(z_t / T) per member: teacher [B, C] (one teacher) or [M, B, C], T [M] -> [M, B, C]."""
    T = temperature.reshape(-1, 1, 1)
    z = teacher_logits if teacher_logits.dim() == 3 else teacher_logits.unsqueeze(0)
    return torch.softmax(z / T, dim=-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *,
                      temperature: torch.Tensor, alpha: torch.Tensor, check: bool = True) -> torch.Tensor:
    """The loss of each member [M]: alpha T^2 KL(q_t || q_s) + (1 - alpha) CE(y, z_s), both averaged over rows.

    student_logits [M, B, C]; teacher_logits [B, C] or [M, B, C]; y [B] or [M, B] class indices;
    temperature and alpha [M]. `check=False` skips the value checks (the training step: the recipe checked them,
    and a check would synchronize the device at every step).
    """
    M, B, C = student_logits.shape
    if check:
        _check_shares(temperature, alpha, M)
    T = temperature.to(student_logits.dtype)
    a = alpha.to(student_logits.dtype)
    q_t = soft_targets(teacher_logits.to(student_logits.dtype), T).expand(M, B, C)
    log_q_s = torch.log_softmax(student_logits / T.reshape(-1, 1, 1), dim=-1)
    kl = (torch.xlogy(q_t, q_t) - q_t * log_q_s).sum(-1).mean(-1)  # KL(q_t || q_s) per member
    labels = y if y.dim() == 2 else y.unsqueeze(0).expand(M, B)
    hard = F.cross_entropy(student_logits.reshape(M * B, C), labels.reshape(-1), reduction="none").reshape(M, B).mean(-1)
    return a * T * T * kl + (1 - a) * hard


def _check_shares(temperature: torch.Tensor, alpha: torch.Tensor, members: int) -> None:
    if temperature.shape != (members,) or alpha.shape != (members,):
        raise ValueError(f"distillation needs one temperature and one alpha per member ({members}), "
                         f"got shapes {tuple(temperature.shape)} and {tuple(alpha.shape)}")
    if torch.any(temperature <= 0):
        raise ValueError(f"distillation temperature must be > 0, got {temperature.tolist()}")
    if torch.any((alpha < 0) | (alpha > 1)):
        raise ValueError(f"distillation alpha must be in [0, 1], got {alpha.tolist()}")
