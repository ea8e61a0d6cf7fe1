"""Population convolutions and pooling (A1): weights [M, C_out, C_in, *k], activations [M, B, C, *spatial].

A population of M convolutions is ONE grouped convolution: the members become channel groups of a
single batch, `[M, B, C, *S] -> [B, M*C, *S]`, and `groups=M` keeps each member's output channels
fed by its own input channels only. The output comes back as the view `[B, M, C', *S'] ->
[M, B, C', *S']`, so its memory already has the member-channel layout the next convolution (or
BatchNorm, or pooling) reads: between layers the move is free. A batch shared by all members
([B, C, *S]) needs no grouping at all: one ordinary convolution against all members' kernels
stacked as M*C_out output channels reads the input once, with no copy.

1-D signals ([C, L]) and 2-D images ([C, H, W]) use `torch.nn.functional.conv1d/conv2d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import lookup

CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d}
"""Spatial dimensions -> the functional convolution."""


def member_channels(x: torch.Tensor) -> torch.Tensor:
    """[M, B, C, *S] -> [B, M*C, *S]: members become channel groups of one batch (a view when x came from
    `from_member_channels`, else a copy)."""
    m, b, c, *spatial = x.shape
    return x.transpose(0, 1).reshape(b, m * c, *spatial)


def from_member_channels(out: torch.Tensor, members: int) -> torch.Tensor:
    """Inverse of `member_channels`: [B, M*C, *S] -> [M, B, C, *S] (a view)."""
    b, mc, *spatial = out.shape
    return out.view(b, members, mc // members, *spatial).transpose(0, 1)


def conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """Member m's convolution `y[m] = conv(x[m], W[m]) + b[m]`, every member at once.

    x: [M, B, C_in, *S] (a batch per member) or [B, C_in, *S] (one batch shared by all members);
    weight: [M, C_out, C_in, *k]; bias: [M, C_out] or None. Returns [M, B, C_out, *S'] with
    `S' = floor((S + 2 padding - k) / stride) + 1` per spatial axis, as `torch.nn.functional.conv1d/2d`.
    """
    members, c_out, c_in, *kernel = weight.shape
    dims = len(kernel)
    shared = x.dim() == dims + 2
    if x.dim() not in (dims + 2, dims + 3) or x.shape[-dims - 1] != c_in or (not shared and x.shape[0] != members):
        space = ", ".join(["L"] if dims == 1 else ["H", "W"])
        raise ValueError(
            f"{dims}-D convolution expects inputs [B, {c_in}, {space}] or [{members}, B, {c_in}, {space}], "
            f"got {list(x.shape)}"
        )
    flat_bias = None if bias is None else bias.reshape(-1)
    if shared:  # one batch for all: the members' kernels side by side as M*C_out output channels
        out = CONVOLUTIONS[dims](x, weight.reshape(members * c_out, c_in, *kernel), flat_bias, stride, padding)
    else:
        out = CONVOLUTIONS[dims](
            member_channels(x), weight.reshape(members * c_out, c_in, *kernel), flat_bias, stride, padding, 1, members
        )
    return from_member_channels(out, members)


class Conv(nn.Module):
    """1-D or 2-D convolution of M members: weight [M, C_out, C_in, *k], bias [M, C_out] (see `conv`).

    Member m computes exactly `torch.nn.Conv1d/Conv2d(C_in, C_out, k, stride, padding)` with its own
    weights; the weight is PyTorch's per-member layout with the member axis in front.
    """

    def __init__(
        self,
        members: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        dims: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if dims not in CONVOLUTIONS:
            raise ValueError(f"Conv: expected dims 1 (signals) or 2 (images), got {dims!r}")
        for what, value, low in (("members", members, 1), ("in_channels", in_channels, 1),
                                 ("out_channels", out_channels, 1), ("kernel_size", kernel_size, 1),
                                 ("stride", stride, 1), ("padding", padding, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Conv: expected {what} to be an integer >= {low}, got {value!r}")
        self.members, self.in_channels, self.out_channels = members, in_channels, out_channels
        self.kernel_size, self.dims, self.stride, self.padding = kernel_size, dims, stride, padding
        self.weight = nn.Parameter(torch.empty(members, out_channels, in_channels, *([kernel_size] * dims)))
        self.bias = nn.Parameter(torch.zeros(members, out_channels)) if bias else None
        self.weight_quant: nn.Module | None = None  # fake quantization of the weight (`compress.qat`)

    def set_weight_quant(self, quant: nn.Module | None) -> "Conv":
        self.weight_quant = quant
        return self

    def effective_weight(self) -> torch.Tensor:
        return self.weight if self.weight_quant is None else self.weight_quant(self.weight)

    @property
    def fan_in(self) -> int:
        """Inputs of one output unit: `C_in * prod(k)`."""
        return self.in_channels * self.kernel_size**self.dims

    @property
    def fan_out(self) -> int:
        """Outputs one input unit feeds: `C_out * prod(k)`."""
        return self.out_channels * self.kernel_size**self.dims

    def output_size(self, size: int) -> int:
        """Length of one spatial axis after this convolution."""
        return (size + 2 * self.padding - self.kernel_size) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv(x, self.effective_weight(), self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (f"members={self.members}, in={self.in_channels}, out={self.out_channels}, "
                f"kernel={self.kernel_size}, dims={self.dims}, stride={self.stride}, padding={self.padding}")


def _max_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    return (F.max_pool1d if x.dim() == 3 else F.max_pool2d)(x, size, size)


def _avg_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    return (F.avg_pool1d if x.dim() == 3 else F.avg_pool2d)(x, size, size)


POOLS = {"none": None, "max": _max_pool, "avg": _avg_pool}
"""Pooling name -> function([B, C, *S], size) over non-overlapping windows (None: no pooling)."""


def pool(x: torch.Tensor, kind: str, size: int = 2) -> torch.Tensor:
    """Max or average over non-overlapping windows of `size` per member, sample and channel:
    [M, B, C, *S] -> [M, B, C, *floor(S / size)] (a trailing remainder is dropped, as torch's pools)."""
    fn = lookup(POOLS, kind, "pool")
    if fn is None:
        return x
    if x.dim() not in (4, 5):
        raise ValueError(f"pool expects [M, B, C, L] or [M, B, C, H, W] activations, got {list(x.shape)}")
    return from_member_channels(fn(member_channels(x), size), x.shape[0])


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Mean over all spatial positions: [M, B, C, *S] -> [M, B, C] (Lin et al., "Network in network", 2014)."""
    if x.dim() < 4:
        raise ValueError(f"global_avg_pool expects [M, B, C, *spatial] activations, got {list(x.shape)}")
    return x.mean(dim=tuple(range(3, x.dim())))


__all__ = [
    "CONVOLUTIONS",
    "POOLS",
    "Conv",
    "conv",
    "from_member_channels",
    "global_avg_pool",
    "member_channels",
    "pool",
]
