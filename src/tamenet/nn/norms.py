"""Per-member normalization of activations [M, B, C] (dense) and [M, B, C, *spatial] (convolutional) (F1, F2).

Every module here takes `(members, channels, *, momentum=0.1, eps=1e-5)` and holds per-member affine
parameters `gamma = weight [M, C]`, `beta = bias [M, C]`. What differs is the set of values each
mean and variance is taken over, for one member m:

| module         | statistics over                   | at inference           | reference |
|----------------|-----------------------------------|------------------------|-----------|
| `BatchNorm`    | batch and spatial, per channel    | running averages       | Ioffe & Szegedy, ICML 2015 |
| `LayerNorm`    | channels and spatial, per sample  | same as training       | Ba et al., 2016 |
| `InstanceNorm` | spatial, per sample and channel   | same (or running avg.) | Ulyanov et al., 2016 |
| `GroupNorm`    | a group of channels and spatial   | same as training       | Wu & He, ECCV 2018 |
| `SwitchNorm`   | softmax mix of the three above    | BN branch: running avg.| Luo et al., ICLR 2019 |

Members never share statistics. BatchNorm and InstanceNorm run PyTorch's fused kernels on a
`[B, M*C, *spatial]` view (per-channel statistics over M*C channels are exactly per-member ones,
running averages included); GroupNorm runs `F.group_norm` on the free `[M*B, C, *spatial]` view,
whose groups never cross members.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_counts(name: str, members: int, channels: int, momentum: float, eps: float) -> None:
    for what, value in (("members", members), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an integer number of {what}, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name}: expected {what} >= 1, got {value}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{name}: expected momentum in [0, 1], got {momentum}")
    if not eps > 0.0:
        raise ValueError(f"{name}: expected eps > 0, got {eps}")


class _MemberNorm(nn.Module):
    """Shared set-up: sizes, eps, momentum, per-member `weight` (gamma, ones) and `bias` (beta, zeros)."""

    member_buffers = ("running_mean", "running_var")  # where a kind keeps running statistics (see `Population.member_tensors`)

    def __init__(self, members: int, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        _check_counts(type(self).__name__, members, channels, momentum, eps)
        self.members, self.channels, self.momentum, self.eps = members, channels, momentum, eps
        self.weight = nn.Parameter(torch.ones(members, channels))
        self.bias = nn.Parameter(torch.zeros(members, channels))

    def _check_input(self, x: torch.Tensor) -> None:
        """x must be [M, B, C] or [M, B, C, *spatial] with this module's M and C."""
        if x.dim() < 3 or x.shape[0] != self.members or x.shape[2] != self.channels:
            m, c = self.members, self.channels
            raise ValueError(
                f"{type(self).__name__} expects [{m}, B, {c}] (dense) or [{m}, B, {c}, *spatial] "
                f"(convolutional) activations, got {list(x.shape)}"
            )

    def _affine(self, normed: torch.Tensor) -> torch.Tensor:
        """`gamma * normed + beta` with gamma, beta [M, C] broadcast over batch and spatial axes."""
        shape = (self.members, 1, self.channels) + (1,) * (normed.dim() - 3)
        return torch.addcmul(self.bias.view(shape), normed, self.weight.view(shape))

    def extra_repr(self) -> str:
        return f"members={self.members}, channels={self.channels}, eps={self.eps}"


def _member_channels(x: torch.Tensor) -> torch.Tensor:
    """[M, B, C, *S] -> [B, M*C, *S]: members become channels of one batch (a copy)."""
    m, b, c, *spatial = x.shape
    return x.transpose(0, 1).reshape(b, m * c, *spatial)


def _from_member_channels(out: torch.Tensor, members: int) -> torch.Tensor:
    """Inverse of `_member_channels`: [B, M*C, *S] -> [M, B, C, *S] (a view)."""
    b, mc, *spatial = out.shape
    return out.view(b, members, mc // members, *spatial).transpose(0, 1)


class _SumOverRanks(torch.autograd.Function):
    """`y = sum_r x_r` over the processes of the default group; its gradient is again the sum over ranks of the
    ranks' output gradients (each rank's loss depends on every rank's x through y)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class BatchNorm(_MemberNorm):
    """`y = gamma (x - mean_B) / sqrt(var_B + eps) + beta`; at test the running averages
    `r <- (1 - alpha) r + alpha * batch_stat` replace the batch statistics (Ioffe & Szegedy, ICML 2015).

    Dense [M, B, C]: statistics over the batch, as `torch.nn.BatchNorm1d` on [B, C].
    Convolutional [M, B, C, *spatial]: over the batch and all positions of each channel, as
    `torch.nn.BatchNorm1d/2d/3d` on [B, C, *spatial]. The running variance is the unbiased one.
    """

    def __init__(self, members: int, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__(members, channels, momentum=momentum, eps=eps)
        self.register_buffer("running_mean", torch.zeros(members, channels))
        self.register_buffer("running_var", torch.ones(members, channels))

    synced = False
    """True in a data-parallel job (`tamenet.dist.data_parallel`): training statistics over every process's rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.synced and self.training:
            return self._synced_forward(x)
        out = F.batch_norm(
            _member_channels(x),
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.reshape(-1),
            self.bias.reshape(-1),
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )
        return _from_member_channels(out, self.members)

    def _synced_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member SyncBatchNorm: the batch statistics of member m over the rows of every process.

        With n_r rows on process r (times the spatial positions), two all-reduces (sums, differentiable:
        `torch.distributed.nn.functional.all_reduce`) give `N = sum_r n_r`, `mean = sum_r sum_i x_i / N` and
        `var = sum_r sum_i (x_i - mean)^2 / N` (two passes, as accurate as one process's), so the output equals
        the one-process BatchNorm of the concatenated batch; the running variance is the unbiased `var N/(N-1)`.
        """
        all_reduce = _SumOverRanks.apply
        dims = [1, *range(3, x.dim())]
        count = torch.full((self.members, 1), x.numel() / (self.members * self.channels), dtype=x.dtype,
                           device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), count], dim=1))
        n = totals[:, -1:]
        mean = totals[:, :-1] / n  # [M, C]
        shape = (self.members, 1, self.channels) + (1,) * (x.dim() - 3)
        centered = x - mean.view(shape)
        var = all_reduce(centered.square().sum(dims)) / n
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var * n / (n - 1).clamp_min(1), alpha=self.momentum)
        return self._affine(centered * torch.rsqrt(var + self.eps).view(shape))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}"


class LayerNorm(_MemberNorm):
    """`y = gamma (x - mean) / sqrt(var + eps) + beta`, statistics over each sample's features (Ba et al., 2016).

    Dense [M, B, C]: over the C features. Convolutional [M, B, C, *spatial]: over channels AND
    positions together (the usual CNN use: `torch.nn.LayerNorm([C, H, W])`, i.e. GroupNorm with one
    group), with gamma and beta per channel, shared by the positions. Same computation in train and
    eval; `momentum` is accepted for a common constructor and unused.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        normed = F.layer_norm(x, tuple(x.shape[2:]), eps=self.eps)
        return self._affine(normed)


class InstanceNorm(_MemberNorm):
    """`y = gamma (x - mean_S) / sqrt(var_S + eps) + beta`, statistics over the spatial positions of
    each sample and channel (Ulyanov et al., "Instance normalization", 2016), as `torch.nn.InstanceNorm1d/2d/3d`
    with `affine=True`.

    Needs [M, B, C, *spatial] with more than one position: on dense [M, B, C] activations each
    sample-channel holds one value, its variance is 0 and the output would be the constant beta,
    so dense inputs raise ValueError (put it after a convolution, or use LayerNorm / GroupNorm).
    By default eval uses the instance statistics too (torch's default); with
    `track_running_stats=True` running averages of the per-instance statistics (mean over the
    batch, unbiased variance) replace them at test, as torch's `track_running_stats=True`.
    """

    def __init__(
        self,
        members: int,
        channels: int,
        *,
        momentum: float = 0.1,
        eps: float = 1e-5,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__(members, channels, momentum=momentum, eps=eps)
        self.track_running_stats = track_running_stats
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(members, channels))
            self.register_buffer("running_var", torch.ones(members, channels))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if x.dim() == 3:
            raise ValueError(
                f"InstanceNorm normalizes each sample's channel over its spatial positions: expected "
                f"[{self.members}, B, {self.channels}, *spatial] (a convolution's output), got dense "
                f"{list(x.shape)}, where every channel holds one value (variance 0); use 'layer' or 'group' "
                "for dense layers"
            )
        tracked = self.running_mean is not None
        out = F.instance_norm(
            _member_channels(x),
            self.running_mean.view(-1) if tracked else None,
            self.running_var.view(-1) if tracked else None,
            self.weight.reshape(-1),
            self.bias.reshape(-1),
            use_input_stats=self.training or not tracked,
            momentum=self.momentum,
            eps=self.eps,
        )
        return _from_member_channels(out, self.members)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, track_running_stats={self.track_running_stats}"


def default_groups(channels: int) -> int:
    """GroupNorm's default group count: the largest divisor G of `channels` with G <= 32 and at
    least 2 channels per group (1 when `channels` is 1 or has no such divisor, e.g. a prime).

    Wu & He use G = 32; for C >= 64 (a power of two) this gives 32. Two channels per group at least
    keeps dense [M, B, C] inputs meaningful (a one-channel group has variance 0 there).
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"default_groups: expected a positive integer number of channels, got {channels!r}")
    for groups in range(min(32, channels // 2), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


class GroupNorm(_MemberNorm):
    """`y = gamma (x - mean_G) / sqrt(var_G + eps) + beta`, statistics per sample over the channels
    of a group and all positions (Wu & He, "Group normalization", ECCV 2018); member by member
    equal to `torch.nn.GroupNorm(groups, C)`.

    `groups` must divide C; by default `default_groups(C)` (largest divisor <= 32 with at least two
    channels per group). groups = 1 is LayerNorm over (C, *spatial); groups = C is InstanceNorm.
    Dense [M, B, C] inputs work (statistics over the group's channels) unless groups = C, where
    each group holds one value and a ValueError is raised. Same computation in train and eval.
    """

    def __init__(
        self,
        members: int,
        channels: int,
        *,
        momentum: float = 0.1,
        eps: float = 1e-5,
        groups: int | None = None,
    ) -> None:
        super().__init__(members, channels, momentum=momentum, eps=eps)
        groups = default_groups(channels) if groups is None else groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or channels % groups:
            raise ValueError(f"GroupNorm: expected groups to be a positive divisor of channels={channels}, got {groups!r}")
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if x.dim() == 3 and self.groups == self.channels:
            raise ValueError(
                f"GroupNorm with groups = channels = {self.channels} on dense {list(x.shape)} activations: "
                "each group holds one value per sample (variance 0); choose fewer groups"
            )
        m, b, c, *spatial = x.shape
        normed = F.group_norm(x.reshape(m * b, c, *spatial), self.groups, eps=self.eps)
        return self._affine(normed.view(x.shape))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}"


class SwitchNorm(_MemberNorm):
    """Switchable normalization (Luo et al., "Differentiable learning-to-normalize via switchable
    normalization", ICLR 2019): per member, a learned softmax mix of batch, layer and instance statistics,

        mean = sum_k softmax(mean_weight)_k mean_k,  var = sum_k softmax(var_weight)_k var_k,
        y = gamma (x - mean) / sqrt(var + eps) + beta,   k in (batch, layer, instance).

    With mu_in, s2_in the per-(sample, channel) statistics over positions, as in the paper:
    mu_ln = mean_C mu_in, s2_ln = mean_C (s2_in + mu_in^2) - mu_ln^2, and the same over the batch
    for the BN branch (all biased variances, so a one-hot mix is exactly that normalizer). The BN
    branch keeps running averages `r <- (1 - momentum) r + momentum * stat` (unbiased variance, as
    BatchNorm) that replace its batch statistics at test. `mean_weight`, `var_weight` [M, 3] start
    at equal logits (a uniform mix).

    Dense [M, B, C] inputs have no instance statistics (one value per sample and channel): the
    mix is then the softmax over the batch and layer logits only.
    """

    BRANCHES = ("batch", "layer", "instance")

    def __init__(self, members: int, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__(members, channels, momentum=momentum, eps=eps)
        self.mean_weight = nn.Parameter(torch.ones(members, len(self.BRANCHES)))
        self.var_weight = nn.Parameter(torch.ones(members, len(self.BRANCHES)))
        self.register_buffer("running_mean", torch.zeros(members, channels))
        self.register_buffer("running_var", torch.ones(members, channels))

    def mixing_weights(self, *, dense: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax weights [M, 3] of (batch, layer, instance) for the mean and the variance; the
        instance weight is 0 for dense inputs."""
        used = 2 if dense else 3
        means = torch.softmax(self.mean_weight[:, :used], dim=-1)
        variances = torch.softmax(self.var_weight[:, :used], dim=-1)
        if dense:
            means, variances = F.pad(means, (0, 1)), F.pad(variances, (0, 1))
        return means, variances

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        dense = x.dim() == 3
        m, b, c = x.shape[:3]
        flat = x.reshape(m, b, c, -1)  # [M, B, C, P], P = 1 for dense inputs
        positions = flat.shape[-1]
        var_in, mean_in = torch.var_mean(flat, dim=-1, unbiased=False)  # [M, B, C]
        square_in = var_in + mean_in.square()  # E[x^2] per sample and channel
        mean_ln = mean_in.mean(2, keepdim=True)  # [M, B, 1]
        var_ln = square_in.mean(2, keepdim=True) - mean_ln.square()
        if self.training:
            mean_bn = mean_in.mean(1, keepdim=True)  # [M, 1, C]
            var_bn = square_in.mean(1, keepdim=True) - mean_bn.square()
            count = b * positions
            if count < 2:
                raise ValueError(
                    "SwitchNorm in training needs more than one value per channel (batch x positions) for its "
                    f"batch statistics, got {list(x.shape)}"
                )
            with torch.no_grad():
                self.running_mean.lerp_(mean_bn.squeeze(1), self.momentum)
                self.running_var.lerp_(var_bn.squeeze(1).clamp_min(0.0) * (count / (count - 1)), self.momentum)
        else:
            mean_bn, var_bn = self.running_mean.unsqueeze(1), self.running_var.unsqueeze(1)
        w_mean, w_var = self.mixing_weights(dense=dense)
        mean = w_mean[:, 0, None, None] * mean_bn + w_mean[:, 1, None, None] * mean_ln
        var = w_var[:, 0, None, None] * var_bn + w_var[:, 1, None, None] * var_ln
        if not dense:
            mean = mean + w_mean[:, 2, None, None] * mean_in
            var = var + w_var[:, 2, None, None] * var_in
        scale = torch.rsqrt(var.clamp_min(0.0) + self.eps)  # [M, B, C]
        normed = (flat - mean.unsqueeze(-1)) * scale.unsqueeze(-1)
        return self._affine(normed.view(x.shape))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}, branches={self.BRANCHES}"


NORMS = {
    "none": None,
    "batch": BatchNorm,
    "layer": LayerNorm,
    "instance": InstanceNorm,
    "group": GroupNorm,
    "switch": SwitchNorm,
}
"""Normalization name -> module class (None: no normalization). Every class is built as
`cls(members, channels, momentum=..., eps=...)` and takes [M, B, C] or [M, B, C, *spatial]."""

__all__ = ["NORMS", "BatchNorm", "GroupNorm", "InstanceNorm", "LayerNorm", "SwitchNorm", "default_groups"]
