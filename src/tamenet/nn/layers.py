"""Population layers: parameters carry a leading member axis [M, ...]; activations are [M, B, ...].

A dense layer is one batched matmul (on the CPU a narrow one, under 16 outputs, computes it transposed:
`NarrowProduct`); when every member sees the same input batch ([B, F]) it is a broadcast view of that batch,
not a copy.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import lookup
from .random import MemberRandom


NARROW = 16
"""On the CPU a dense layer with fewer outputs than this (10 classes, one regression value) computes its products
transposed (`NarrowProduct`): its forward and backward 1.6-2.5x faster than the plain batched matmul's for
populations, 0.8x for a population of one; from 16 outputs on the plain one is as fast or faster (bench/README.md,
"`bench_narrow.py`: the narrow output layer"). Not measured on a GPU, where the plain product stays. 0 turns it off."""


class NarrowProduct(torch.autograd.Function):
    """`x @ W + b` for a narrow W [M, in, out] (out < NARROW), each product in the layout a GEMM runs fast in.

    Forward: `(W^T x^T + b)^T`, the [M, out, B] product copied into the plain layer's [M, B, out]. Backward: the
    input gradient `g W^T` as the plain layer computes it, the weight gradient `(g^T x)^T` copied into W's own
    layout, the bias gradient `g.sum(1)`. With out < 16 the plain `x W` and `x^T g` leave the GEMM's fast axis
    mostly empty. The values are the plain layer's up to float32 rounding (another summation order); member m's
    are the same bits whatever the population around it (tests/test_nn.py, with MKL's strict mode: `tamenet.blas`).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return narrow_product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = _batched(torch.bmm, grad.transpose(1, 2), x).transpose(1, 2).contiguous()
        grad_b = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def narrow_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`NarrowProduct`'s forward without autograd: x [M, B, in], W [M, in, out], b [M, out] -> [M, B, out]."""
    wt, xt = weight.transpose(1, 2), x.transpose(1, 2)
    out = _batched(torch.bmm, wt, xt) if bias is None else _batched(torch.baddbmm, bias.unsqueeze(2), wt, xt)
    # copied back to the plain layer's layout (a few kB per member), so every later operation and its backward see
    # what they saw before: with the transposed view, member 16 of 18 and the same member in a chunk of 9 trained
    # apart by 3e-8 in tests/test_dsearch.py (the operation that rounded differently was not pinned down)
    return out.transpose(1, 2).contiguous()


def _batched(product, *operands: torch.Tensor) -> torch.Tensor:
    """`product(*operands)` over the member axis, a population of one included: for a batch of one, PyTorch calls the
    BLAS's single GEMM, which rounds these transposed products differently from its batched GEMM, so one member
    is computed as a batch of two (the same member twice, a broadcast view) and the copy dropped. Member m then
    gets the same bits alone as in any population (the contract: member m == its separate run)."""
    if operands[-1].shape[0] != 1:
        return product(*operands)
    return product(*(t.expand(2, *t.shape[1:]) for t in operands))[:1]


class Linear(nn.Module):
    """Dense layer of M members: `y[m] = x[m] @ W[m] + b[m]` with W [M, in, out] (`einsum('mbi,mio->mbo')`).

    Stored [in, out] per member (PyTorch's nn.Linear keeps the transpose): the batched matmul then
    leaves activations contiguous and the weight gradient in the weight's own layout, which measured
    25-30 % faster per step than the [out, in] layout for M = 1 to 32.
    """

    def __init__(self, members: int, in_features: int, out_features: int, *, bias: bool = True) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features)) if bias else None
        self.weight_noise: nn.Module | None = None
        self.weight_norm: nn.Module | None = None
        self.dropconnect: nn.Module | None = None
        self.weight_quant: nn.Module | None = None
        self.plain = True  # the stored weight is used as it is (no noise, weight norm, quantization or DropConnect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 3) or x.shape[-1] != self.in_features or (x.dim() == 3 and x.shape[0] != self.members):
            raise ValueError(
                f"Linear expects inputs [B, {self.in_features}] or [{self.members}, B, {self.in_features}], "
                f"got {list(x.shape)}"
            )
        if x.dim() == 2:  # one batch shared by all members: a broadcast view, no copy
            x = x.expand(self.members, *x.shape)
        weight = self.weight if self.plain else self.effective_weight()
        if self.out_features < NARROW and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu"):
            if torch.is_grad_enabled():
                return NarrowProduct.apply(x, weight, self.bias)
            return narrow_product(x, weight, self.bias)  # the same forward, without autograd's bookkeeping
        if self.bias is None:  # (under autocast the plain product, which autocast knows how to cast)
            return torch.bmm(x, weight)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weight)

    def set_weight_transforms(
        self,
        *,
        noise: nn.Module | None = None,
        norm: nn.Module | None = None,
        dropconnect: nn.Module | None = None,
    ) -> "Linear":
        """Make the effective weight `dropconnect(norm(W + noise))`; each step is optional (None: left out).

        `noise` and `dropconnect` act in training only (`GaussianNoise`, `DropConnect`); `norm` maps
        W [M, in, out] to a weight of the same shape (e.g. `WeightStandardization`, `SpectralNorm`)
        in training and at test, as a reparametrization: gradients reach the stored W through it.
        """
        self.weight_noise, self.weight_norm, self.dropconnect = noise, norm, dropconnect
        self.plain = noise is None and norm is None and dropconnect is None and self.weight_quant is None
        return self

    def set_weight_quant(self, quant: nn.Module | None) -> "Linear":
        """Fake-quantize the (normalized) weight before DropConnect, in training and at test (`compress.qat`)."""
        self.weight_quant = quant
        self.plain = self.weight_noise is None and self.weight_norm is None and self.dropconnect is None and quant is None
        return self

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses: `dropconnect(quant(norm(W + noise)))` (noise and masks in training only)."""
        weight = self.weight
        if self.weight_noise is not None:
            weight = self.weight_noise(weight)
        if self.weight_norm is not None:
            weight = self.weight_norm(weight)
        if self.weight_quant is not None:
            weight = self.weight_quant(weight)
        if self.dropconnect is not None:
            weight = self.dropconnect(weight)
        return weight

    def extra_repr(self) -> str:
        return f"members={self.members}, in={self.in_features}, out={self.out_features}"


DROPOUT_MODES = ("inverted", "classic")
"""How dropout keeps the expected output: `inverted` scales by 1/(1-p) in training, `classic` by (1-p) at test."""


def _per_member(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member tensor [M] viewed to broadcast against `like` [M, ...]."""
    return value.view(-1, *([1] * (like.dim() - 1)))


def dropout(x: torch.Tensor, p: torch.Tensor, uniform: torch.Tensor, *, mode: str = "inverted") -> torch.Tensor:
    """Training output of dropout: drop each unit with probability p[m] (p is the DROP probability, not the keep one).

    A unit is kept when its U[0,1) draw in `uniform` (shaped like x) is >= p, so P(keep) = 1 - p.
    inverted: `x * mask / (1 - p)`, and the test output is x itself (Srivastava et al., JMLR 2014);
    classic: `x * mask`, and the test output is `(1 - p) x` (`dropout_test`). Either way the
    expected training output equals the test output: E[mask] = 1 - p.
    """
    if mode not in DROPOUT_MODES:
        raise ValueError(f"dropout: expected mode in {DROPOUT_MODES}, got {mode!r}")
    return dropout_masked(x, p, uniform >= _per_member(p, uniform), mode=mode)


def dropout_masked(x: torch.Tensor, p: torch.Tensor, keep: torch.Tensor, *, mode: str = "inverted") -> torch.Tensor:
    """`dropout` with the keep mask given (bool, broadcasting against x [M, ...]): `x * keep / (1 - p)`
    (inverted) or `x * keep` (classic)."""
    kept = torch.where(keep, x, 0.0)  # (x * keep would first copy the bool mask into floats)
    if mode == "classic":
        return kept
    p = _per_member(p, kept)
    scale = torch.where(p < 1.0, 1.0 / (1.0 - p).clamp_min(1e-12), torch.zeros_like(p))
    return kept.mul_(scale)  # in place: one fewer activation-sized buffer (mul's backward does not need its output)


def dropout_test(x: torch.Tensor, p: torch.Tensor, *, mode: str = "inverted") -> torch.Tensor:
    """Test output of dropout, the expectation of its training output: x (inverted) or `(1 - p) x` (classic)."""
    if mode not in DROPOUT_MODES:
        raise ValueError(f"dropout_test: expected mode in {DROPOUT_MODES}, got {mode!r}")
    return x if mode == "inverted" else x * (1.0 - _per_member(p, x))


def _member_tensor(values: list[float], members: int | None, what: str) -> torch.Tensor:
    if members is not None and len(values) != members:
        raise ValueError(f"{what}: expected {members} values (one per member), got {len(values)}")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def _check_probabilities(name: str, p: list[float]) -> None:
    for v in p:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise ValueError(f"{name}: expected drop probabilities in [0, 1), got {v!r}")


class Dropout(nn.Module):
    """Dropout with a drop probability per member; masks come from the population's `MemberRandom`.

    `mode` is `inverted` (scale 1/(1-p) in training, identity at test) or `classic` (mask only in
    training, scale by 1-p at test). Setting `sampling` (see `tamenet.mc_dropout.mc_sampling`) keeps
    drawing masks in eval mode, for Monte-Carlo dropout, from `MemberRandom.generator_keep` (fast
    for large draws). `acts` says whether a call would change x.
    """

    member_buffers = ("p",)  # buffers with the member axis (see `Population.member_tensors`)

    def __init__(self, p: list[float], *, random: MemberRandom, stream: int, mode: str = "inverted") -> None:
        super().__init__()
        _check_probabilities("Dropout", p)
        if mode not in DROPOUT_MODES:
            raise ValueError(f"Dropout: expected mode in {DROPOUT_MODES}, got {mode!r}")
        self.register_buffer("p", _member_tensor(p, random.size, "Dropout"))
        self.random, self.stream, self.mode = random, stream, mode
        self.active = any(v > 0 for v in p)
        self.sampling = False

    @property
    def acts(self) -> bool:
        return self.active and (self.training or self.sampling or self.mode == "classic")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.acts:
            return x
        if x.dim() == 2:  # a batch shared by all members gains the member axis
            x = x.unsqueeze(0).expand(self.random.size, *x.shape)
        if not (self.training or self.sampling):
            return dropout_test(x, self.p, mode=self.mode)
        if not self.training:  # Monte-Carlo sampling: T copies of a batch's masks, from torch's generator
            return dropout_masked(x, self.p, self.random.generator_keep(self.stream, tuple(x.shape[1:]), self.p,
                                                                         device=x.device), mode=self.mode)
        draws = self.random.uniform(self.stream, tuple(x.shape[1:]), device=x.device, rows=True)
        return dropout(x, self.p, draws, mode=self.mode)

    def sample_tiled(self, x: torch.Tensor, copies: int) -> torch.Tensor:
        """Monte-Carlo sampling of x [M, N, ...] tiled `copies` times along N: exactly what a sampling
        forward of the tiled [M, copies * N, ...] batch gives (the same masks), without the tiled copy of x."""
        members, n, *rest = x.shape
        keep = self.random.generator_keep(self.stream, (copies * n, *rest), self.p, device=x.device)
        # the scale goes on the small x; the mask becomes the output in place (a broadcast `where` is slower)
        kept = x.unsqueeze(1) if self.mode == "classic" else dropout_masked(x.unsqueeze(1), self.p, torch.ones((), dtype=torch.bool))
        out = keep.view(members, copies, n, *rest).to(x.dtype).mul_(kept)
        return out.view(members, copies * n, *rest)

    def extra_repr(self) -> str:
        return f"p={self.p.tolist()} (drop probability), mode={self.mode}"


class DropConnect(nn.Module):
    """DropConnect on a member-stacked weight W [M, in, out]: each single weight is dropped with
    probability p[m] (the DROP probability), a fresh mask per training batch and member, scaled by
    1/(1-p) so that E[W_eff] = W; at test the weight is W itself, exactly its expectation
    (Wan et al., "Regularization of neural networks using DropConnect", ICML 2013, with inverted scaling).
    """

    member_buffers = ("p",)

    def __init__(self, p: list[float], *, random: MemberRandom, stream: int) -> None:
        super().__init__()
        _check_probabilities("DropConnect", p)
        self.register_buffer("p", _member_tensor(p, random.size, "DropConnect"))
        self.random, self.stream = random, stream
        self.active = any(v > 0 for v in p)

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.active):
            return W
        draws = self.random.uniform(self.stream, tuple(W.shape[1:]), device=W.device)
        return dropout(W, self.p, draws)

    def extra_repr(self) -> str:
        return f"p={self.p.tolist()} (drop probability)"


def add_noise(x: torch.Tensor, sigma: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """`x + sigma[m] * eps` with eps ~ N(0, I) given in `normal` (shaped like x): E = x, cov = sigma^2 I."""
    return x + _per_member(sigma, x) * normal


class GaussianNoise(nn.Module):
    """Additive Gaussian noise with a standard deviation per member, in training only (D4).

    On activations [M, B, ...] (hidden units) or on a weight [M, in, out] (weight noise: the
    gradient is then taken at the noisy weight, as autograd differentiates `W + sigma eps` in W).
    Draws come from the population's `MemberRandom`, so member m's noise does not depend on the others.
    `per_row`: the noised tensor's axis 1 is the batch (activations; False for a weight), so each process of a
    data-parallel job draws its own rows' noise (`MemberRandom.uniform`'s `rows`).
    """

    member_buffers = ("sigma",)

    def __init__(self, sigma: list[float], *, random: MemberRandom, stream: int, per_row: bool = True) -> None:
        super().__init__()
        for v in sigma:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0.0:
                raise ValueError(f"GaussianNoise: expected standard deviations >= 0, got {v!r}")
        self.register_buffer("sigma", _member_tensor(sigma, random.size, "GaussianNoise"))
        self.random, self.stream, self.per_row = random, stream, per_row
        self.active = any(v > 0 for v in sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.active):
            return x
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.random.size, *x.shape)
        eps = self.random.normal(self.stream, tuple(x.shape[1:]), device=x.device, rows=self.per_row)
        return add_noise(x, self.sigma, eps)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma.tolist()}"


def tile(t: torch.Tensor, times: int, axis: int) -> torch.Tensor:
    """`t` repeated `times` times along `axis`: copy c holds rows c*n .. (c+1)*n - 1 (Monte-Carlo dropout)."""
    reps = [1] * t.dim()
    reps[axis] = times
    return t.repeat(*reps)


ACTIVATIONS = {
    "sigmoid": lambda slope: nn.Sigmoid(),
    "tanh": lambda slope: nn.Tanh(),
    "relu": lambda slope: nn.ReLU(),
    "leaky_relu": lambda slope: nn.LeakyReLU(slope),
    "gelu": lambda slope: nn.GELU(),
}
"""Activation name -> factory(leaky slope) of an element-wise module."""


def make_activation(name: str, *, slope: float = 0.01) -> nn.Module:
    return lookup(ACTIVATIONS, name, "activation")(slope)


__all__ = [
    "ACTIVATIONS", "DROPOUT_MODES", "DropConnect", "Dropout", "GaussianNoise", "Linear", "NarrowProduct", "add_noise",
    "dropout", "dropout_masked", "dropout_test", "make_activation", "tile",
]
