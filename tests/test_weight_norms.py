"""Weight normalization of member-stacked dense weights W [M, in, out]: standardization, the
lecture's min-max form, spectral normalization (against torch.linalg and torch's spectral_norm),
and truncated-SVD denoising."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from tamenet.nn import (
    Linear,
    SpectralNorm,
    energy_rank,
    minmax_weight,
    spectral_norm_estimate,
    spectral_normalize,
    standardize_weight,
    svd_denoise,
)

MEMBERS, N_IN, N_OUT = 3, 12, 7


def _weights(seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """W [M, in, out], members at different scales and offsets."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.1, 1.0, 5.0], dtype=dtype).view(-1, 1, 1)
    return torch.randn(MEMBERS, N_IN, N_OUT, generator=g, dtype=dtype) * scale + torch.tensor([0.0, 0.3, -2.0], dtype=dtype).view(-1, 1, 1)


def _orthonormal(rows: int, cols: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=torch.float64))
    return q


def _with_singular_values(values: list[list[float]], seed: int = 0) -> torch.Tensor:
    """W [M, in, out] with the given singular values per member (descending, k = min(in, out))."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in values:
        U, V = _orthonormal(N_IN, len(s), g), _orthonormal(N_OUT, len(s), g)
        out.append(U @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ V.T)
    return torch.stack(out)


# ---------------------------------------------------------------- standardization, min-max


def test_standardized_weights_have_zero_mean_and_unit_std_per_unit():
    W = _weights()
    Z = standardize_weight(W, eps=0.0)
    torch.testing.assert_close(Z.mean(dim=1), torch.zeros(MEMBERS, N_OUT, dtype=W.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(Z.std(dim=1, unbiased=False), torch.ones(MEMBERS, N_OUT, dtype=W.dtype), atol=1e-12, rtol=0)
    # with eps: the formula (w - mean) / sqrt(var + eps), biased variance, one unit written out
    eps = 1e-2
    w = W[2, :, 4]
    expected = (w - w.mean()) / torch.sqrt(w.var(unbiased=False) + eps)
    torch.testing.assert_close(standardize_weight(W, eps=eps)[2, :, 4], expected)


def test_standardization_is_differentiable_and_invariant_to_unit_scale_and_shift():
    W = _weights().requires_grad_(True)
    standardize_weight(W, eps=0.0)[:, :, 0].square().sum().backward()
    assert torch.isfinite(W.grad).all() and torch.count_nonzero(W.grad[:, :, 0]) > 0
    assert torch.count_nonzero(W.grad[:, :, 1:]) == 0  # units are independent
    shifted = W.detach() * torch.rand(MEMBERS, 1, N_OUT, dtype=W.dtype) * 3 + 0.1 + torch.randn(MEMBERS, 1, N_OUT, dtype=W.dtype)
    torch.testing.assert_close(standardize_weight(shifted, eps=0.0), standardize_weight(W.detach(), eps=0.0))


@pytest.mark.parametrize("gamma, beta", [(1.0, 0.0), (2.0, -1.0)])
def test_minmax_maps_each_unit_onto_the_lecture_range(gamma, beta):
    W = _weights()
    Y = minmax_weight(W, gamma=gamma, beta=beta)
    torch.testing.assert_close(Y.amin(dim=1), torch.full((MEMBERS, N_OUT), beta, dtype=W.dtype))
    torch.testing.assert_close(Y.amax(dim=1), torch.full((MEMBERS, N_OUT), beta + gamma, dtype=W.dtype))
    # the lecture's formula W' = gamma (W - min W) / (max W - min W) + beta, one unit written out
    w = W[1, :, 3]
    torch.testing.assert_close(Y[1, :, 3], gamma * (w - w.min()) / (w.max() - w.min()) + beta)


def test_minmax_accepts_per_unit_gamma_beta_and_maps_a_constant_unit_to_beta():
    W = _weights()
    W[0, :, 2] = 0.7
    gamma = torch.rand(MEMBERS, N_OUT, dtype=W.dtype) + 0.5
    beta = torch.randn(MEMBERS, N_OUT, dtype=W.dtype)
    Y = minmax_weight(W, gamma=gamma, beta=beta)
    torch.testing.assert_close(Y[1:].amin(dim=1), beta[1:])
    torch.testing.assert_close(Y[1:].amax(dim=1), beta[1:] + gamma[1:])
    torch.testing.assert_close(Y[0, :, 2], beta[0, 2].expand(N_IN))
    with pytest.raises(ValueError, match=r"gamma to be a float or a tensor \[3, 7\].*got \[7\]"):
        minmax_weight(W, gamma=torch.ones(N_OUT))


@pytest.mark.parametrize("fn", [standardize_weight, minmax_weight, svd_denoise])
def test_weight_functions_reject_non_stacked_weights(fn):
    with pytest.raises(ValueError, match=r"W \[M, in, out\].*got shape \[12, 7\]"):
        fn(torch.randn(N_IN, N_OUT), rank=1) if fn is svd_denoise else fn(torch.randn(N_IN, N_OUT))


# ---------------------------------------------------------------- spectral normalization


def test_power_iteration_converges_to_the_spectral_norm_per_member():
    W = _weights(seed=1, dtype=torch.float32)
    u = torch.nn.functional.normalize(torch.randn(MEMBERS, N_OUT), dim=-1)
    exact = torch.linalg.matrix_norm(W.double(), ord=2).float()
    sigma_1, _ = spectral_norm_estimate(W, u, iters=1)
    assert (sigma_1 <= exact * (1 + 1e-5)).all()  # a Rayleigh-type estimate never overshoots
    sigma, u_next = spectral_norm_estimate(W, u, iters=500)
    torch.testing.assert_close(sigma, exact, rtol=1e-3, atol=0)
    torch.testing.assert_close(u_next.norm(dim=-1), torch.ones(MEMBERS))
    # iterations resume from the returned u: 250 + 250 steps reach the same estimate
    _, u_half = spectral_norm_estimate(W, u, iters=250)
    again, _ = spectral_norm_estimate(W, u_half, iters=250)
    torch.testing.assert_close(again, sigma, rtol=1e-5, atol=0)


def test_spectral_normalized_weights_are_one_lipschitz():
    W = _weights(seed=2)
    u = torch.nn.functional.normalize(torch.randn(MEMBERS, N_OUT, dtype=W.dtype), dim=-1)
    W_sn, _ = spectral_normalize(W, u, iters=500)
    torch.testing.assert_close(torch.linalg.matrix_norm(W_sn, ord=2), torch.ones(MEMBERS, dtype=W.dtype), rtol=1e-3, atol=0)
    x = torch.randn(MEMBERS, 200, N_IN, dtype=W.dtype)
    y = torch.bmm(x, W_sn)
    assert (y.norm(dim=-1) <= x.norm(dim=-1) * (1 + 1e-3)).all()  # ||x W / sigma|| <= ||x||
    assert (y.norm(dim=-1) / x.norm(dim=-1)).amax(dim=1).min() > 0.5  # and not trivially small


def test_spectral_norm_module_equals_torch_spectral_norm_per_member_in_training():
    W0 = _weights(seed=3, dtype=torch.float32)
    module = SpectralNorm(MEMBERS, N_OUT, iters=1)
    refs = []
    for m in range(MEMBERS):
        ref = torch.nn.Linear(N_IN, N_OUT, bias=False)
        with torch.no_grad():
            ref.weight.copy_(W0[m].T)  # torch keeps [out, in]
        torch.nn.utils.parametrizations.spectral_norm(ref)
        refs.append(ref)
        with torch.no_grad():
            module.u[m].copy_(ref.parametrizations.weight[0]._u)  # same starting vector
    # torch keeps v from the previous step, we recompute it from the current W: with W fixed the
    # iterates are the same, step after step
    W = W0.clone().requires_grad_(True)
    for step in range(3):
        out = module(W)
        for m, ref in enumerate(refs):
            torch.testing.assert_close(out[m], ref.weight.T, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(module.u[m], ref.parametrizations.weight[0]._u, rtol=1e-5, atol=1e-6)
    # gradients through sigma agree too
    up = torch.randn(MEMBERS, N_IN, N_OUT)
    W.grad = None
    (module(W) * up).sum().backward()
    for m, ref in enumerate(refs):
        (ref.weight.T * up[m]).sum().backward()
        torch.testing.assert_close(W.grad[m], ref.parametrizations.weight.original.grad.T, rtol=1e-4, atol=1e-5)


def test_spectral_norm_module_iterates_in_training_only():
    W = _weights(seed=4, dtype=torch.float32)
    module = SpectralNorm(MEMBERS, N_OUT, iters=2, seeds=[5, 6, 7])
    u0 = module.u.clone()
    module.train()(W)
    u1 = module.u.clone()
    assert not torch.equal(u0, u1)
    torch.testing.assert_close(u1, spectral_norm_estimate(W, u0, iters=2)[1])
    out = module.eval()(W)
    assert torch.equal(module.u, u1)  # eval does not iterate
    sigma = torch.bmm(W, u1.unsqueeze(-1)).squeeze(-1).norm(dim=-1)  # sigma = ||W u|| at the stored u
    torch.testing.assert_close(module.sigma, sigma)
    torch.testing.assert_close(out, W / sigma.view(-1, 1, 1))
    # member m's vector depends on its seed only, not on the population
    single = SpectralNorm(1, N_OUT, seeds=[6])
    torch.testing.assert_close(single.u[0], u0[1])


def test_spectral_norm_as_a_parametrization_of_a_population_linear():
    torch.manual_seed(0)
    layer = Linear(MEMBERS, N_IN, N_OUT)
    with torch.no_grad():
        layer.weight.normal_()
    parametrize.register_parametrization(layer, "weight", SpectralNorm(MEMBERS, N_OUT, iters=3))
    for _ in range(100):  # training steps with fixed weights: u converges
        layer(torch.randn(4, N_IN))
    layer.eval()
    torch.testing.assert_close(torch.linalg.matrix_norm(layer.weight, ord=2), torch.ones(MEMBERS), rtol=1e-3, atol=0)


def test_spectral_norm_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"expected u \[3, 7\].*got \[3, 12\]"):
        spectral_norm_estimate(_weights(), torch.ones(MEMBERS, N_IN))
    with pytest.raises(ValueError, match=r"expects W \[3, in, 5\], got \[3, 12, 7\]"):
        SpectralNorm(MEMBERS, 5)(_weights())
    with pytest.raises(ValueError, match="iters"):
        SpectralNorm(MEMBERS, N_OUT, iters=0)


# ---------------------------------------------------------------- SVD denoising


def _truncated_reference(W: torch.Tensor, ranks: list[int]) -> torch.Tensor:
    out = []
    for m, r in enumerate(ranks):
        U, S, Vh = torch.linalg.svd(W[m], full_matrices=False)
        out.append(U[:, :r] @ torch.diag(S[:r]) @ Vh[:r])
    return torch.stack(out)


@pytest.mark.parametrize("rank", [1, 3, [1, 2, 5]], ids=["1", "3", "per_member"])
def test_svd_denoise_equals_the_truncated_svd_and_has_the_requested_rank(rank):
    W = _weights(seed=5)
    ranks = rank if isinstance(rank, list) else [rank] * MEMBERS
    D = svd_denoise(W, rank=rank)
    torch.testing.assert_close(D, _truncated_reference(W, ranks))
    assert torch.linalg.matrix_rank(D).tolist() == ranks
    # Eckart-Young: the error is the discarded singular values
    S = torch.linalg.svdvals(W)
    for m, r in enumerate(ranks):
        torch.testing.assert_close(torch.linalg.matrix_norm(W[m] - D[m]), S[m, r:].norm())


def test_svd_denoise_with_full_rank_gives_back_w():
    W = _weights(seed=6)
    torch.testing.assert_close(svd_denoise(W, rank=min(N_IN, N_OUT)), W)


def test_energy_mode_picks_the_smallest_rank_reaching_the_share():
    # squared singular values 16, 4, 1, 0.25, ... : cumulative shares written out below
    values = [[4.0, 2.0, 1.0, 0.5, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0], [10.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]]
    W = _with_singular_values(values)
    total0 = 16 + 4 + 1 + 0.25
    cases = {  # energy: expected rank per member
        0.7: [1, 5, 1],  # 16 / 21.25 = 0.753; 5/7 = 0.714; 100 / 100.06
        16 / total0 + 1e-6: [2, 6, 1],
        0.95: [3, 7, 1],
        1.0: [4, 7, 7],  # zero singular values are never needed
    }
    S = torch.linalg.svdvals(W)
    for energy, expected in cases.items():
        assert energy_rank(S, energy).tolist() == expected, energy
        D = svd_denoise(W, energy=energy)
        torch.testing.assert_close(D, _truncated_reference(W, expected))
        kept = torch.linalg.svdvals(D).square().sum(-1) / S.square().sum(-1)
        assert (kept >= energy - 1e-9).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({}, "exactly one of rank or energy"), ({"rank": 2, "energy": 0.9}, "exactly one"), ({"rank": 8}, r"\[1, 7\]"),
     ({"rank": [1, 2]}, "3 of them"), ({"energy": 1.5}, r"energy in \(0, 1\]"), ({"rank": 2.0}, r"\[1, 7\]")],
)
def test_svd_denoise_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        svd_denoise(_weights(), **kwargs)
