"""Quantization-aware training of population weights (H2): a weight transform per layer, bit width per member.

`WeightQuantizer` maps a layer's weight [M, ...] to its fake-quantized copy (`quantize.py`): member m
on its own grid of `bits[m]` bits from its own range (per tensor, or per output channel), rounded in the
forward pass and passed straight through in the backward pass. A member with `bits` 0 keeps its float
weights. The bit widths are a member buffer, so compaction and checkpoints carry them. With
`quantize.activations` each quantized layer's input is fake-quantized too (`activations.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import QuantizeConfig, RecipeError
from ..nn import Conv, Linear
from .activations import attach_activation_quantizer
from .quantize import check_bits, fake_quantize_tensor

FLOAT_BITS = 16  # what a member with bits 0 is computed at before its float weights are put back


class WeightQuantizer(nn.Module):
    """W [M, ...] -> S (Q - Z) per member (STE gradient); members with bits 0 pass through unchanged."""

    member_buffers = ("bits",)

    def __init__(self, bits: list[int], *, symmetric: bool, per_channel: bool, channel_axis: int) -> None:
        super().__init__()
        if any(b != 0 for b in bits):
            check_bits([b for b in bits if b != 0])  # here once: the forward pass reads nothing back to the host
        self.register_buffer("bits", torch.tensor([float(b) for b in bits]))
        self.symmetric, self.per_channel, self.channel_axis = symmetric, per_channel, channel_axis

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        off = self.bits == 0
        bits = torch.where(off, torch.full_like(self.bits, FLOAT_BITS), self.bits).to(weight.dtype)
        quantized = fake_quantize_tensor(weight, bits, symmetric=self.symmetric, member_axis=True,
                                         granularity="channel" if self.per_channel else "tensor",
                                         channel_axis=self.channel_axis, check=False)
        return torch.where(off.view(-1, *([1] * (weight.dim() - 1))), weight, quantized)

    def extra_repr(self) -> str:
        return f"bits={self.bits.tolist()}, symmetric={self.symmetric}, per_channel={self.per_channel}"


def quantized_layers(model: nn.Module, cfg: QuantizeConfig) -> list[nn.Module]:
    """The Linear and Conv layers QAT acts on: those whose weight `quantize.layers` names, or every one."""
    owners = {f"{name}.weight": module for name, module in model.named_modules() if isinstance(module, (Linear, Conv))}
    if cfg.layers is None:
        return list(owners.values())
    unknown = [n for n in cfg.layers if n not in owners]
    if unknown:
        raise RecipeError(f"quantize.layers: unknown weight layer(s) {unknown}; expected names from {sorted(owners)}")
    return [owners[n] for n in cfg.layers]


def attach_weight_quantizers(model: nn.Module, cfg: QuantizeConfig | None, bits: list[int]) -> nn.Module:
    """Give each quantized layer its `WeightQuantizer` (bits per member) when the recipe quantizes, and with
    `quantize.activations` an `ActivationQuantizer` of its input (`compress.activations`); else a no-op."""
    if cfg is None or not cfg.active:
        return model
    for layer in quantized_layers(model, cfg):
        axis = -1 if isinstance(layer, Linear) else 1  # output channels: Linear [M, in, out], Conv [M, out, in, *k]
        layer.set_weight_quant(WeightQuantizer(bits, symmetric=cfg.symmetric, per_channel=cfg.per_channel,
                                               channel_axis=axis))
        if cfg.activations:
            shared_ndim = 2 if isinstance(layer, Linear) else layer.dims + 2  # a batch shared by every member
            attach_activation_quantizer(layer, bits, symmetric=cfg.symmetric, observer=cfg.observer,
                                        shared_ndim=shared_ndim)
    return model
