"""Ridge and lasso (seed 003): the minimum-norm limit, the MAP reading under a Gaussian prior,
agreement with scikit-learn's Lasso, and the runnable snippets of docs/map.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso

from tamenet.linear_models import lasso_ista, lasso_objective, ridge, ridge_map, soft_threshold
from tamenet.models import ParamRole
from tamenet.penalties import l1_proximal_

LAMBDAS = [10.0**-k for k in range(1, 9)]  # 1e-1 .. 1e-8


def _rank_deficient(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8 equations, 12 unknowns, rank 5: underdetermined and rank-deficient, b outside the range of A."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(8, 5)) @ rng.normal(size=(5, 12)), rng.normal(size=8)


def test_ridge_closed_form_and_svd_form_agree_with_the_normal_equations():
    A, b = _rank_deficient()
    lam = 0.3
    by_hand = np.linalg.inv(A.T @ A + lam * np.eye(12)) @ A.T @ b
    np.testing.assert_allclose(ridge(A, b, lam), by_hand, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ridge(A, b, lam, method="normal"), by_hand, rtol=1e-10, atol=1e-12)
    B = np.stack([b, 2 * b], axis=1)  # several right-hand sides at once
    np.testing.assert_allclose(ridge(torch.tensor(A), B, lam), np.stack([by_hand, 2 * by_hand], axis=1), atol=1e-10)


def test_ridge_tends_to_the_minimum_norm_solution_monotonically_and_linearly_in_lambda():
    A, b = _rank_deficient()
    x_min_norm = np.linalg.pinv(A) @ b
    errors = [np.linalg.norm(ridge(A, b, lam) - x_min_norm) for lam in LAMBDAS]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    assert errors[-1] < 1e-8
    # x(lam) - pinv(A) b = -lam sum_i (u_i^T b) / (s_i (s_i^2 + lam)) v_i  ->  error / lam -> ||sum_i (u_i^T b) / s_i^3 v_i||
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    rank = int(np.sum(s > 1e-10 * s[0]))
    slope = np.linalg.norm(Vt[:rank].T @ ((U[:, :rank].T @ b) / s[:rank] ** 3))
    np.testing.assert_allclose(errors[-1] / LAMBDAS[-1], slope, rtol=1e-3)
    np.testing.assert_allclose(ridge(A, b, 0.0), x_min_norm, atol=1e-12)
    # the limit is the least-squares solution of smallest norm: adding a null-space vector keeps the residual
    null = Vt[rank]  # a right singular vector with singular value 0: A null = 0
    np.testing.assert_allclose(A @ (x_min_norm + null), A @ x_min_norm, atol=1e-10)
    assert np.linalg.norm(x_min_norm + null) > np.linalg.norm(x_min_norm)


def test_normal_equations_lose_accuracy_for_small_lambda_where_the_svd_form_does_not():
    A, b = _rank_deficient()
    x_min_norm = np.linalg.pinv(A) @ b
    svd_error = np.linalg.norm(ridge(A, b, 1e-8) - x_min_norm)
    normal_error = np.linalg.norm(ridge(A, b, 1e-8, method="normal") - x_min_norm)
    assert normal_error > 10 * svd_error  # cond(A^T A + lam I) ~ s_max^2 / lam


@pytest.mark.parametrize(("sigma", "tau"), [(0.1, 1.0), (0.5, 0.2)])
def test_ridge_is_the_map_estimate_under_a_gaussian_prior(sigma, tau):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(20, 50))
    b = A @ (tau * rng.normal(size=50)) + sigma * rng.normal(size=20)
    x_map = ridge_map(A, b, noise_std=sigma, prior_std=tau)
    np.testing.assert_allclose(x_map, ridge(A, b, sigma**2 / tau**2))
    # -log p(x | b) = ||A x - b||^2 / (2 sigma^2) + ||x||^2 / (2 tau^2) + const, differentiated by autograd
    x = torch.tensor(x_map, requires_grad=True)
    At, bt = torch.tensor(A), torch.tensor(b)
    neg_log_posterior = (At @ x - bt).square().sum() / (2 * sigma**2) + x.square().sum() / (2 * tau**2)
    (grad,) = torch.autograd.grad(neg_log_posterior, x)
    scale = (At.T @ bt).abs().max().item() / sigma**2
    assert grad.abs().max().item() < 1e-10 * scale
    # and a different lambda is not stationary for this posterior
    x_other = torch.tensor(ridge(A, b, 3 * sigma**2 / tau**2), requires_grad=True)
    other = (At @ x_other - bt).square().sum() / (2 * sigma**2) + x_other.square().sum() / (2 * tau**2)
    assert torch.autograd.grad(other, x_other)[0].abs().max().item() > 1e-5 * scale  # 1e5 x the bound above


def _lasso_problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    A = rng.normal(size=(30, 10))
    x_true = np.zeros(10)
    x_true[:3] = [2.0, -1.5, 1.0]
    return A, A @ x_true + 0.1 * rng.normal(size=30)


@pytest.mark.parametrize("accelerated", [False, True], ids=["ista", "fista"])
@pytest.mark.parametrize("lam", [0.5, 3.0, 20.0])
def test_lasso_ista_matches_scikit_learn_lasso(lam, accelerated):
    A, b = _lasso_problem()
    x = lasso_ista(A, b, lam, tol=1e-13, max_iter=50_000, accelerated=accelerated)
    reference = Lasso(alpha=lam / len(b), fit_intercept=False, tol=1e-12, max_iter=100_000).fit(A, b).coef_
    np.testing.assert_allclose(x, reference, atol=1e-8)
    np.testing.assert_array_equal(x == 0, reference == 0)  # the same exact zeros
    # optimality: |a_j^T (A x - b)| <= lam where x_j = 0, = lam with the opposite sign elsewhere
    grad = A.T @ (A @ x - b)
    assert np.all(np.abs(grad[x == 0]) <= lam + 1e-7)
    np.testing.assert_allclose(grad[x != 0], -lam * np.sign(x[x != 0]), atol=1e-7)
    assert lasso_objective(A, b, x, lam) <= lasso_objective(A, b, reference, lam) + 1e-9


def test_l1_gives_exact_zeros_where_l2_only_shrinks():
    A, b = _lasso_problem()
    x_l1 = lasso_ista(A, b, 3.0)
    assert np.sum(x_l1 == 0) >= 5 and np.all(x_l1[:3] != 0)
    assert np.sum(ridge(A, b, 3.0) == 0) == 0
    np.testing.assert_array_equal(lasso_ista(A, b, np.abs(A.T @ b).max() * 1.001), np.zeros(10))  # lam >= lam_max


def test_soft_threshold_is_tamenets_l1_proximal_step():
    v = np.array([-2.0, -0.3, 0.0, 0.2, 0.5, 1.5])
    np.testing.assert_allclose(soft_threshold(v, 0.4), [-1.6, 0.0, 0.0, 0.0, 0.1, 1.1], rtol=1e-15, atol=1e-15)
    assert np.count_nonzero(soft_threshold(v, 0.4)) == 3  # the band [-0.4, 0.4] becomes exact zeros
    param = torch.nn.Parameter(torch.tensor(v)[None])  # one member
    l1_proximal_([(ParamRole("w", param, "weight", 0), 1.0)], torch.tensor([0.4], dtype=torch.float64))
    np.testing.assert_allclose(param.data[0].numpy(), soft_threshold(v, 0.4), atol=1e-15)


def test_user_mistakes_raise_with_expected_and_received():
    A, b = _rank_deficient()
    with pytest.raises(ValueError, match=r"lam: expected lam >= 0, got -1"):
        ridge(A, b, -1.0)
    with pytest.raises(ValueError, match=r"lam: expected lam > 0"):
        ridge(A, b, 0.0, method="normal")
    with pytest.raises(ValueError, match=r"method: expected 'svd' or 'normal'"):
        ridge(A, b, 0.1, method="qr")
    with pytest.raises(ValueError, match=r"b: expected 8 rows"):
        ridge(A, b[:5], 0.1)
    with pytest.raises(ValueError, match=r"A: expected a 2-D array"):
        ridge(b, b, 0.1)
    with pytest.raises(TypeError, match=r"lam: expected a real number"):
        lasso_ista(A, b, "0.1")
    with pytest.raises(ValueError, match=r"prior_std: expected a positive"):
        ridge_map(A, b, noise_std=1.0, prior_std=0.0)
    with pytest.warns(RuntimeWarning, match=r"max_iter=3"):
        lasso_ista(A, b, 0.1, max_iter=3)


def test_the_snippets_of_docs_map_md_run():
    page = Path(__file__).resolve().parents[1] / "docs" / "map.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - our own documentation
    assert np.sum(namespace["x"] == 0) == 7  # the lasso snippet's exact zeros
