"""Fake quantization of activations (H2): the input of every quantized layer on its member's grid.

An `ActivationQuantizer` sits in front of a Linear or Conv layer (a forward pre-hook) and maps the
layer's input x to r_hat = S (Q - Z) (`quantize.py`), per tensor and per member: member m's range
[lo_m, hi_m] comes from an observer calibrated on TRAINING rows only, and its grid has `bits[m]` bits
(0: the member stays in float).

- Quantization-aware training: in training mode every batch first updates the observer, then is
  quantized with the updated range; the backward pass is the straight-through estimator (the gradient
  of the identity inside the clipping range, zero outside). In eval mode (validation, test,
  prediction) the range is frozen, so validation rows never move it.
- Post-training quantization (`compress.ptq`): `calibrate(model, X_train)` runs the training rows
  through the model in eval mode with the observers switched on, then freezes them.

Observers: ``minmax`` keeps the extremes seen, lo = min over batches of min(x), hi = max of max(x);
``moving_average`` keeps lo <- lo + c (min(x) - lo) (and so hi) with c = `MOVING_AVERAGE_MOMENTUM`,
less sensitive to one outlying batch (Jacob et al. 2018, section 3; Krishnamoorthi 2018, section 3.1).
The ranges [M] are member buffers, so compaction, best weights and checkpoints carry them; an
observer that has seen nothing (lo = +inf) leaves its member's input in float.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .quantize import QuantParams, check_bits, dequantize, fake_quantize, quant_params, quantize

OBSERVERS: dict[str, float | None] = {"minmax": None, "moving_average": 0.1}
"""Observer name -> its momentum c (None: the running min and max)."""
MOVING_AVERAGE_MOMENTUM = OBSERVERS["moving_average"]
FLOAT_BITS = 16  # what a member with bits 0 is computed at before its float input is put back


class ActivationQuantizer(nn.Module):
    """x [B, ...] (shared by the members) or [M, B, ...] -> S (Q(x) - Z) per member, range from the observer."""

    member_buffers = ("bits", "low", "high")

    def __init__(self, bits: list[int], *, symmetric: bool, observer: str = "minmax", shared_ndim: int = 2) -> None:
        super().__init__()
        if observer not in OBSERVERS:
            raise ValueError(f"unknown activation observer {observer!r}; expected one of {list(OBSERVERS)}")
        if any(b != 0 for b in bits):
            check_bits([b for b in bits if b != 0])
        self.register_buffer("bits", torch.tensor([float(b) for b in bits]))
        self.register_buffer("low", torch.full((len(bits),), float("inf")))
        self.register_buffer("high", torch.full((len(bits),), float("-inf")))
        self.symmetric, self.observer, self.shared_ndim = symmetric, observer, shared_ndim
        self.calibrating = False  # True: observe in eval mode too (post-training calibration)

    def observe(self, x: torch.Tensor) -> None:
        """Update each member's range with the batch x [M, B, ...] (the observer's rule, see the module)."""
        with torch.no_grad():
            flat = x.detach().reshape(x.shape[0], -1)
            lo, hi = flat.amin(dim=1).to(self.low.dtype), flat.amax(dim=1).to(self.high.dtype)
            momentum = OBSERVERS[self.observer]
            if momentum is None:
                self.low.copy_(torch.minimum(self.low, lo))
                self.high.copy_(torch.maximum(self.high, hi))
            else:
                seen = torch.isfinite(self.low)
                self.low.copy_(torch.where(seen, self.low + momentum * (lo - self.low), lo))
                self.high.copy_(torch.where(seen, self.high + momentum * (hi - self.high), hi))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.bits.numel()
        if x.dim() == self.shared_ndim:  # one batch for every member: each gets its own grid
            x = x.expand(members, *x.shape)
        if self.training or self.calibrating:
            self.observe(x)
        shape = (members, *([1] * (x.dim() - 1)))
        seen = torch.isfinite(self.low)
        off = (self.bits == 0) | ~seen
        bits = torch.where(off, torch.full_like(self.bits, FLOAT_BITS), self.bits).to(x.dtype)
        low = torch.where(seen, self.low, torch.zeros_like(self.low)).to(x.dtype).view(shape)
        high = torch.where(seen, self.high, torch.zeros_like(self.high)).to(x.dtype).view(shape)
        params = quant_params(low, high, bits, symmetric=self.symmetric, member_axis=True, check=False)
        return torch.where(off.view(shape), x, fake_quantize(x, params))

    def member_params(self, m: int):
        """Member m's frozen `QuantParams` (scalars), or None when it stays in float (bits 0 or nothing observed)."""
        if float(self.bits[m]) == 0 or not bool(torch.isfinite(self.low[m])):
            return None
        return quant_params(self.low[m], self.high[m], int(self.bits[m]), symmetric=self.symmetric)

    def extra_repr(self) -> str:
        return f"bits={self.bits.tolist()}, symmetric={self.symmetric}, observer={self.observer}"


class InputFakeQuantize(nn.Module):
    """Plain PyTorch, for an exported member: x -> S (clamp(round(x / S) + Z, q_min, q_max) - Z) on one frozen grid."""

    def __init__(self, params: QuantParams) -> None:
        super().__init__()
        for name in ("scale", "zero_point", "q_min", "q_max"):
            self.register_buffer(name, getattr(params, name).detach().clone().reshape(()).to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = QuantParams(self.scale, self.zero_point, self.q_min, self.q_max)
        return dequantize(quantize(x, params), params)

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):.6g}, zero_point={float(self.zero_point):g}, range=[{float(self.q_min):g}, {float(self.q_max):g}]"


def with_input_quantizer(layer: nn.Module, m: int, plain: nn.Module) -> nn.Module:
    """An exported layer `plain` of member m, behind member m's frozen input grid when `layer` quantizes its input."""
    quantizer = getattr(layer, "input_quant", None)
    params = None if quantizer is None else quantizer.member_params(m)
    return plain if params is None else nn.Sequential(InputFakeQuantize(params), plain)


def _quantize_input(layer: nn.Module, args: tuple) -> tuple:
    """The forward pre-hook: the layer's first argument through its `input_quant` (None: left as it is)."""
    if layer.input_quant is None:
        return None
    return (layer.input_quant(args[0]), *args[1:])


def attach_activation_quantizer(layer: nn.Module, bits: list[int], *, symmetric: bool, observer: str,
                                shared_ndim: int) -> ActivationQuantizer:
    """Put an `ActivationQuantizer` in front of `layer` (its child `input_quant`, called by a pre-hook)."""
    if not getattr(layer, "input_quant_hooked", False):  # one hook per layer, however often it is re-attached
        layer.register_forward_pre_hook(_quantize_input)
        layer.input_quant_hooked = True
    layer.input_quant = ActivationQuantizer(bits, symmetric=symmetric, observer=observer, shared_ndim=shared_ndim)
    return layer.input_quant


def remove_activation_quantizers(model: nn.Module) -> None:
    """Take every layer's `input_quant` away (its pre-hook then passes the input through)."""
    for module in model.modules():
        if isinstance(getattr(module, "input_quant", None), ActivationQuantizer):
            module.input_quant = None


def activation_quantizers(model: nn.Module) -> list[ActivationQuantizer]:
    return [m for m in model.modules() if isinstance(m, ActivationQuantizer)]


@contextmanager
def calibrating(model: nn.Module) -> Iterator[list[ActivationQuantizer]]:
    """Within the block, every activation observer of `model` records what passes, in eval mode too."""
    quantizers = activation_quantizers(model)
    for q in quantizers:
        q.calibrating = True
    try:
        yield quantizers
    finally:
        for q in quantizers:
            q.calibrating = False


@torch.no_grad()
def calibrate(model: nn.Module, X: torch.Tensor, *, batch_size: int = 512) -> None:
    """Post-training calibration: run the rows X (training rows only) through `model` in eval mode, batch by
    batch, with every activation observer recording; afterwards the ranges stay frozen."""
    if len(X) == 0:
        raise ValueError("calibration needs training rows; the run's training split is empty")
    was_training = model.training
    model.eval()
    with calibrating(model):
        for start in range(0, len(X), batch_size):
            model(X[start:start + batch_size])
    model.train(was_training)


__all__ = ["OBSERVERS", "ActivationQuantizer", "InputFakeQuantize", "activation_quantizers",
           "attach_activation_quantizer", "calibrate", "calibrating", "remove_activation_quantizers",
           "with_input_quantizer"]
