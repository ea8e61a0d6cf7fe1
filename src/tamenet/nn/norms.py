"""Per-member normalization of [M, B, C] activations (F1, F2).

BatchNorm over the M*C channels of a [B, M*C] view is exactly per-member BatchNorm, so PyTorch's
fused kernel does the work, including the running-average update used at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm(nn.Module):
    """`y = gamma (x - mean_B) / sqrt(var_B + eps) + beta`; at test the running averages
    `r <- (1 - alpha) r + alpha * batch_stat` replace the batch statistics (Ioffe & Szegedy, ICML 2015)."""

    def __init__(self, members: int, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.members, self.channels, self.momentum, self.eps = members, channels, momentum, eps
        self.weight = nn.Parameter(torch.ones(members, channels))
        self.bias = nn.Parameter(torch.zeros(members, channels))
        self.register_buffer("running_mean", torch.zeros(members, channels))
        self.register_buffer("running_var", torch.ones(members, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b, c = x.shape
        flat = x.transpose(0, 1).reshape(b, m * c)
        out = F.batch_norm(
            flat,
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.reshape(-1),
            self.bias.reshape(-1),
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )
        return out.view(b, m, c).transpose(0, 1)


class LayerNorm(nn.Module):
    """`y = gamma (x - mean_C) / sqrt(var_C + eps) + beta`, statistics over each sample's features (Ba et al., 2016)."""

    def __init__(self, members: int, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(members, channels))
        self.bias = nn.Parameter(torch.zeros(members, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x, (self.channels,), eps=self.eps)
        return torch.addcmul(self.bias.unsqueeze(1), normed, self.weight.unsqueeze(1))


NORMS = {"none": None, "batch": BatchNorm, "layer": LayerNorm}
"""Normalization name -> module class (None: no normalization)."""
