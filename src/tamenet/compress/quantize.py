"""Fake quantization, exactly the lecture's affine map `r = S (Q - Z)` (H2).

A real value r is stored as an integer Q in [q_min, q_max] with a scale S and a zero point Z:

    Q = clamp(round(r / S) + Z, q_min, q_max),        r_hat = S (Q - Z).

*Asymmetric* (affine) quantization maps the observed range [lo, hi] (widened to hold 0, so that
zero is exact) onto [0, 2^b - 1]: S = (hi - lo) / (2^b - 1), Z = round(-lo / S). *Symmetric*
quantization fixes Z = 0 and maps [-a, a], a = max(|lo|, |hi|), onto the signed range
[-(2^(b-1) - 1), 2^(b-1) - 1] (the restricted range, so that the grid is symmetric about 0).

Quantization-aware training (QAT) uses r_hat in the forward pass and the straight-through
estimator in the backward pass: the gradient of the identity inside the clipping range and zero
outside it (Bengio et al. 2013; Jacob et al. 2018). Inside means the clamp does not bind,
q_min <= round(r / S) + Z <= q_max: the grid's ends [S (q_min - Z), S (q_max - Z)] widened by
half a step, so the observed extremes, which round onto the ends, keep their gradient.

Ranges come per tensor or per output channel, and for a population per member: the leading
member axis of a population tensor always gets its own (S, Z), and a bit width may be a tensor
[M] so that 8, 6 and 4 bits train as members of one population.

References: B. Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018; Y. Bengio, N. Leonard, A. Courville, "Estimating
or Propagating Gradients Through Stochastic Neurons", 2013; R. Krishnamoorthi, "Quantizing deep
convolutional networks for efficient inference: A whitepaper", 2018.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_BITS = 2
MAX_BITS = 16
SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("tensor", "channel")


@dataclass(frozen=True)
class QuantParams:
    """The affine map of one quantizer: scale S, zero point Z and the integer range, broadcastable to r."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    q_min: torch.Tensor
    q_max: torch.Tensor

    @property
    def clip_low(self) -> torch.Tensor:
        """The smallest real value the grid holds, S (q_min - Z)."""
        return self.scale * (self.q_min - self.zero_point)

    @property
    def clip_high(self) -> torch.Tensor:
        """The largest real value the grid holds, S (q_max - Z)."""
        return self.scale * (self.q_max - self.zero_point)


def check_bits(bits: torch.Tensor | int | float) -> torch.Tensor:
    """Bit widths as a float tensor, refused unless every one is an integer in [2, 16]."""
    b = torch.as_tensor(bits, dtype=torch.float64)
    if torch.any(b != torch.round(b)) or torch.any(b < MIN_BITS) or torch.any(b > MAX_BITS):
        raise ValueError(f"quantization bit width must be an integer in [{MIN_BITS}, {MAX_BITS}], got {b.tolist()}")
    return b


def integer_range(bits: torch.Tensor | int, *, symmetric: bool, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(q_min, q_max): [0, 2^b - 1] for asymmetric, [-(2^(b-1) - 1), 2^(b-1) - 1] for symmetric.

    `check=False` takes `bits` as a float tensor already checked (the training step: no host read per step)."""
    b = check_bits(bits) if check else bits
    if symmetric:
        q_max = 2.0 ** (b - 1) - 1
        return -q_max, q_max
    return torch.zeros_like(b), 2.0 ** b - 1


def reduce_dims(shape: torch.Size, *, granularity: str, member_axis: bool, channel_axis: int) -> tuple[int, ...]:
    """The axes a range is taken over: all but the member axis (and the channel axis, per channel)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown quantization granularity {granularity!r}; expected one of {list(GRANULARITIES)}")
    keep = {0} if member_axis else set()
    if granularity == "channel":
        keep.add(channel_axis % len(shape))
    return tuple(d for d in range(len(shape)) if d not in keep)


def observed_range(r: torch.Tensor, *, granularity: str = "tensor", member_axis: bool = False,
                   channel_axis: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of r per member and per tensor or channel, kept broadcastable to r."""
    dims = reduce_dims(r.shape, granularity=granularity, member_axis=member_axis, channel_axis=channel_axis)
    if not dims:
        return r.detach().clone(), r.detach().clone()
    return r.detach().amin(dim=dims, keepdim=True), r.detach().amax(dim=dims, keepdim=True)


def quant_params(lo: torch.Tensor, hi: torch.Tensor, bits: torch.Tensor | int, *, symmetric: bool,
                 member_axis: bool = False, check: bool = True) -> QuantParams:
    """S and Z that map [lo, hi] onto the integer grid of `bits` bits (bits [M] broadcast on the member axis)."""
    q_min, q_max = integer_range(bits, symmetric=symmetric, check=check)
    q_min, q_max = (_on_members(q.to(lo.dtype).to(lo.device), lo.dim(), member_axis) for q in (q_min, q_max))
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))  # 0 is exact
    tiny = torch.finfo(lo.dtype).tiny
    if symmetric:
        scale = torch.maximum(torch.maximum(-lo, hi) / q_max, torch.full_like(lo, tiny))
        zero = torch.zeros_like(scale)
    else:
        scale = torch.maximum((hi - lo) / (q_max - q_min), torch.full_like(lo, tiny))
        zero = torch.clamp(q_min - torch.round(lo / scale), q_min, q_max)
    return QuantParams(scale, zero, q_min.expand_as(scale), q_max.expand_as(scale))


def _on_members(q: torch.Tensor, ndim: int, member_axis: bool) -> torch.Tensor:
    """A bit-width-derived value [M] (or a scalar) shaped to broadcast against an ndim tensor."""
    if q.dim() == 0:
        return q
    if not member_axis:
        raise ValueError(f"one bit width per member needs a population tensor (member_axis=True); got {q.numel()} widths")
    return q.reshape(-1, *([1] * (ndim - 1)))


def quantize(r: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """Q = clamp(round(r / S) + Z, q_min, q_max), as floats holding integers."""
    return torch.clamp(torch.round(r / params.scale) + params.zero_point, params.q_min, params.q_max)


def dequantize(q: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """r_hat = S (Q - Z)."""
    return params.scale * (q - params.zero_point)


class _FakeQuantize(torch.autograd.Function):
    """Forward S (Q(r) - Z); backward the straight-through estimator, 1 inside the clipping range, 0 outside."""

    @staticmethod
    def forward(ctx, r, scale, zero_point, q_min, q_max):  # noqa: D102 (autograd protocol)
        params = QuantParams(scale, zero_point, q_min, q_max)
        unclamped = torch.round(r / scale) + zero_point
        inside = (unclamped >= q_min) & (unclamped <= q_max)  # the clamp does not bind
        ctx.save_for_backward(inside)
        return dequantize(torch.clamp(unclamped, q_min, q_max), params)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None, None


def fake_quantize(r: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """r rounded to its grid in the forward pass, with the straight-through gradient (see the module)."""
    return _FakeQuantize.apply(r, params.scale, params.zero_point, params.q_min, params.q_max)


def fake_quantize_tensor(r: torch.Tensor, bits: torch.Tensor | int, *, symmetric: bool = True,
                         granularity: str = "tensor", member_axis: bool = False, channel_axis: int = -1,
                         check: bool = True) -> torch.Tensor:
    """Fake-quantize r with a range taken from r itself (weights: per tensor or per output channel)."""
    lo, hi = observed_range(r, granularity=granularity, member_axis=member_axis, channel_axis=channel_axis)
    return fake_quantize(r, quant_params(lo, hi, bits, symmetric=symmetric, member_axis=member_axis, check=check))


class MinMaxObserver:
    """Calibration of an activation's range on training rows: the running min and max (or their moving average).

    `momentum=None` keeps the extreme values seen; a momentum in (0, 1] keeps an exponential moving
    average of each batch's range (less sensitive to outliers, as in QAT's activation observers).
    """

    def __init__(self, *, granularity: str = "tensor", member_axis: bool = False, channel_axis: int = -1,
                 momentum: float | None = None) -> None:
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError(f"observer momentum must be in (0, 1] or None, got {momentum}")
        self.granularity, self.member_axis, self.channel_axis = granularity, member_axis, channel_axis
        self.momentum = momentum
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None

    def observe(self, r: torch.Tensor) -> None:
        lo, hi = observed_range(r, granularity=self.granularity, member_axis=self.member_axis,
                                channel_axis=self.channel_axis)
        if self.low is None:
            self.low, self.high = lo, hi
        elif self.momentum is None:
            self.low, self.high = torch.minimum(self.low, lo), torch.maximum(self.high, hi)
        else:
            self.low = self.low + self.momentum * (lo - self.low)
            self.high = self.high + self.momentum * (hi - self.high)

    def params(self, bits: torch.Tensor | int, *, symmetric: bool) -> QuantParams:
        if self.low is None:
            raise ValueError("the observer has seen no rows: calibrate it on training batches before quantizing")
        return quant_params(self.low, self.high, bits, symmetric=symmetric, member_axis=self.member_axis)
