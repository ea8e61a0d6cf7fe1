"""Normalization of member-stacked dense weights W [M, in, out] (F3).

tamenet's dense layout (see `Linear`): a unit is an output column j, its incoming weights are
W[m, :, j]. Per-unit forms reduce over axis 1; matrix forms act on each member's [in, out] matrix.

* `standardize_weight`: weight standardization (Qiao et al., 2019), zero mean and unit std per unit.
* `minmax_weight`: the lecture's min-max form `gamma (W - min W) / (max W - min W) + beta` per unit.
* `spectral_normalize` / `SpectralNorm`: W / sigma_max by power iteration (Miyato et al., ICLR 2018).
* `svd_denoise`: truncated SVD reconstruction (keep the top-r singular values), as in PCA denoising.

All are pure functions of tensors (gradients flow through W) except `SpectralNorm`, which keeps
the power-iteration vector as a buffer and can be registered as a parametrization:
`torch.nn.utils.parametrize.register_parametrization(linear, "weight", SpectralNorm(M, out))`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _check_stacked(name: str, W: torch.Tensor) -> None:
    if not isinstance(W, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor W [M, in, out], got {type(W).__name__}")
    if W.dim() != 3:
        raise ValueError(f"{name}: expected member-stacked weights W [M, in, out] (3 axes), got shape {list(W.shape)}")


def standardize_weight(W: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """Weight standardization per output unit: `(w - mean(w)) / sqrt(var(w) + eps)` with w = W[m, :, j]
    and the biased variance (Qiao et al., "Micro-batch training with batch-channel normalization and
    weight standardization", 2019). With eps = 0 each unit has mean 0 and std 1 exactly."""
    _check_stacked("standardize_weight", W)
    if eps < 0:
        raise ValueError(f"standardize_weight: expected eps >= 0, got {eps}")
    var, mean = torch.var_mean(W, dim=1, keepdim=True, unbiased=False)
    return (W - mean) * torch.rsqrt(var + eps)


def _per_unit(name: str, what: str, value: float | torch.Tensor, W: torch.Tensor) -> float | torch.Tensor:
    """A float, or a tensor [M, out] (one value per unit) viewed as [M, 1, out]."""
    if isinstance(value, torch.Tensor):
        expected = (W.shape[0], W.shape[2])
        if tuple(value.shape) != expected:
            raise ValueError(f"{name}: expected {what} to be a float or a tensor {list(expected)} (one per unit), got {list(value.shape)}")
        return value.unsqueeze(1)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected {what} to be a float or a tensor, got {type(value).__name__}")
    return float(value)


def minmax_weight(
    W: torch.Tensor,
    *,
    gamma: float | torch.Tensor = 1.0,
    beta: float | torch.Tensor = 0.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """The lecture's weight normalization, per output unit w = W[m, :, j]:

        w' = gamma (w - min(w)) / (max(w) - min(w)) + beta,

    so each unit's weights span exactly [beta, beta + gamma] ([0, 1] by default). gamma and beta
    are floats or tensors [M, out] (one per unit, e.g. learned). A constant unit (max = min) has
    its range clamped to eps and maps to beta."""
    _check_stacked("minmax_weight", W)
    gamma = _per_unit("minmax_weight", "gamma", gamma, W)
    beta = _per_unit("minmax_weight", "beta", beta, W)
    low = W.amin(dim=1, keepdim=True)
    span = (W.amax(dim=1, keepdim=True) - low).clamp_min(eps)
    return gamma * (W - low) / span + beta


def spectral_norm_estimate(
    W: torch.Tensor, u: torch.Tensor, *, iters: int = 1, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest singular value sigma [M] of each member's W[m] ([in, out]) by power iteration,
    and the updated right vector u [M, out] (Miyato et al., "Spectral normalization for
    generative adversarial networks", ICLR 2018):

        repeat iters times:  v = normalize(W u),  u = normalize(W^T v)
        then                 v = normalize(W u),  sigma = v^T W u   (= ||W u|| for unit u)

    The vectors are constants (no gradient, as in the paper and in torch's spectral_norm); sigma
    carries W's gradient. iters = 0 evaluates sigma at the given u. For a fixed W these are the
    iterates of `torch.nn.utils.parametrizations.spectral_norm` on the [out, in] transpose (torch
    also stores v from the previous step; here v is recomputed from the current W)."""
    _check_stacked("spectral_norm_estimate", W)
    members, _, out = W.shape
    if not isinstance(u, torch.Tensor) or tuple(u.shape) != (members, out):
        got = list(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
        raise ValueError(f"spectral_norm_estimate: expected u [{members}, {out}] (one out-vector per member), got {got}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"spectral_norm_estimate: expected iters to be an integer >= 0, got {iters!r}")
    with torch.no_grad():
        mat = W.detach()
        u = u.detach().to(mat.dtype)
        for _ in range(iters):
            v = F.normalize(torch.einsum("mio,mo->mi", mat, u), dim=-1, eps=eps)
            u = F.normalize(torch.einsum("mio,mi->mo", mat, v), dim=-1, eps=eps)
        v = F.normalize(torch.einsum("mio,mo->mi", mat, u), dim=-1, eps=eps)
    sigma = torch.einsum("mi,mio,mo->m", v, W, u)
    return sigma, u


def spectral_normalize(
    W: torch.Tensor, u: torch.Tensor, *, iters: int = 1, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """`W[m] / sigma_m` with sigma_m the power-iteration estimate of W[m]'s largest singular value
    (see `spectral_norm_estimate`), and the updated u [M, out]. Once u has converged each member's
    map x -> x W[m] / sigma_m is 1-Lipschitz (spectral norm 1) (Miyato et al., ICLR 2018)."""
    sigma, u = spectral_norm_estimate(W, u, iters=iters, eps=eps)
    return W / sigma.view(-1, 1, 1), u


class SpectralNorm(nn.Module):
    """Spectral normalization of a member-stacked weight W [M, in, out] with the power-iteration
    vector u [M, out] kept as a buffer: `forward(W) = W / sigma(W)`.

    Training: `iters` power-iteration steps per forward, written back into u. Eval: no iteration,
    sigma = ||W u|| at the stored u. u[m] starts as a normalized N(0, 1) draw from a generator
    seeded by seeds[m] (default m), so a member's vector does not depend on the population. The
    last estimate is kept in the `sigma` buffer [M]. Use it directly, or as a parametrization:
    `torch.nn.utils.parametrize.register_parametrization(linear, "weight", SpectralNorm(M, out))`.
    """

    member_buffers = ("u", "sigma")

    def __init__(
        self,
        members: int,
        out_features: int,
        *,
        iters: int = 1,
        seeds: Sequence[int] | None = None,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        for what, value in (("members", members), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SpectralNorm: expected {what} to be a positive integer, got {value!r}")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"SpectralNorm: expected iters >= 1 power-iteration steps per training forward, got {iters!r}")
        seeds = list(range(members)) if seeds is None else list(seeds)
        if len(seeds) != members:
            raise ValueError(f"SpectralNorm: expected {members} seeds (one per member), got {len(seeds)}")
        self.members, self.out_features, self.iters, self.eps = members, out_features, iters, eps
        draws = [torch.randn(out_features, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        self.register_buffer("u", F.normalize(torch.stack(draws), dim=-1, eps=eps))
        self.register_buffer("sigma", torch.ones(members))

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        _check_stacked("SpectralNorm", W)
        if W.shape[0] != self.members or W.shape[2] != self.out_features:
            raise ValueError(
                f"SpectralNorm expects W [{self.members}, in, {self.out_features}], got {list(W.shape)}"
            )
        sigma, u = spectral_norm_estimate(W, self.u, iters=self.iters if self.training else 0, eps=self.eps)
        with torch.no_grad():
            if self.training:
                self.u.copy_(u)
            self.sigma.copy_(sigma.detach())
        return W / sigma.view(-1, 1, 1)

    def extra_repr(self) -> str:
        return f"members={self.members}, out={self.out_features}, iters={self.iters}"


class WeightStandardization(nn.Module):
    """Weight standardization as a reparametrization of a dense weight W [M, in, out]:
    `forward(W) = gain * standardize_weight(W)` per output unit (Qiao et al., 2019).

    `gain` is a fixed number; `sqrt(2 / fan_in)` (the default in models) keeps He's forward variance
    when no normalization layer follows, as scaled weight standardization does (Brock et al., "Characterizing
    signal propagation to close the performance gap in unnormalized ResNets", ICLR 2021); a
    BatchNorm after the layer makes the gain irrelevant.
    """

    def __init__(self, *, gain: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__()
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
            raise ValueError(f"WeightStandardization: expected a gain > 0, got {gain!r}")
        self.gain, self.eps = float(gain), eps

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        return self.gain * standardize_weight(W, eps=self.eps)

    def extra_repr(self) -> str:
        return f"gain={self.gain:.4g}"


class MinMaxWeight(nn.Module):
    """The lecture's min-max weight normalization as a reparametrization with learned gamma and
    beta per unit ([M, out] parameters): `forward(W) = gamma (W - min W) / (max W - min W) + beta`
    (`minmax_weight`). They start at gamma = 2 a, beta = -a, so each unit's weights span [-a, a]
    (a = `bound`, e.g. He-uniform's sqrt(6 / fan_in)); training moves the span.
    """

    def __init__(self, members: int, out_features: int, *, bound: float = 1.0) -> None:
        super().__init__()
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
            raise ValueError(f"MinMaxWeight: expected a bound > 0, got {bound!r}")
        self.gamma = nn.Parameter(torch.full((members, out_features), 2.0 * bound))
        self.beta = nn.Parameter(torch.full((members, out_features), -float(bound)))

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        return minmax_weight(W, gamma=self.gamma, beta=self.beta)


def energy_rank(singular_values: torch.Tensor, energy: float) -> torch.Tensor:
    """Per member, the smallest r whose r largest singular values hold a share `energy` of the
    total squared ones: min r with sum_{i<r} s_i^2 >= energy * sum_i s_i^2. singular_values
    [M, k] sorted descending (as `torch.linalg.svdvals` gives); returns r [M] (int64, 1..k)."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy_rank: expected energy in (0, 1], got {energy}")
    cumulative = singular_values.square().cumsum(dim=-1)
    total = cumulative[..., -1:]
    below = (cumulative < energy * total).sum(dim=-1)
    return (below + 1).clamp_max(singular_values.shape[-1])


def svd_denoise(
    W: torch.Tensor,
    *,
    rank: int | Sequence[int] | None = None,
    energy: float | None = None,
) -> torch.Tensor:
    """Truncated-SVD reconstruction of each member's W[m] = U S V^T: `U_r S_r V_r^T`, keeping the r
    largest singular values (Eckart-Young: the closest rank-r matrix; the weight analogue of PCA
    reconstruction). Give exactly one of `rank` (an int, or one per member) or `energy` in (0, 1]
    (r per member from `energy_rank`). Usually applied under `torch.no_grad()` to trained weights."""
    _check_stacked("svd_denoise", W)
    if (rank is None) == (energy is None):
        raise ValueError(f"svd_denoise: expected exactly one of rank or energy, got rank={rank!r}, energy={energy!r}")
    members, n_in, n_out = W.shape
    k = min(n_in, n_out)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    if energy is not None:
        ranks = energy_rank(S, energy)
    else:
        if isinstance(rank, int):
            values = [rank] * members
        else:
            values = list(rank) if isinstance(rank, (Sequence, torch.Tensor)) else []
            values = [int(r) if isinstance(r, torch.Tensor) and r.dim() == 0 else r for r in values]
        if len(values) != members or any(isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= k for r in values):
            raise ValueError(
                f"svd_denoise: expected rank to be an integer in [1, {k}] or {members} of them (one per member), got {rank!r}"
            )
        ranks = torch.tensor(values, device=W.device)
    keep = torch.arange(k, device=W.device) < ranks.view(-1, 1)  # [M, k]
    return (U * (S * keep).unsqueeze(1)) @ Vh


__all__ = [
    "MinMaxWeight",
    "SpectralNorm",
    "WeightStandardization",
    "energy_rank",
    "minmax_weight",
    "spectral_norm_estimate",
    "spectral_normalize",
    "standardize_weight",
    "svd_denoise",
]
