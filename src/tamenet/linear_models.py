"""Regularized least squares for an ill-posed `A x = b`, and their MAP reading (SPEC C7, seed 003).

Ridge (L2, Tikhonov):   min_x ||A x - b||^2 + lam ||x||^2
                        x = (A^T A + lam I)^-1 A^T b = sum_i s_i / (s_i^2 + lam) (u_i^T b) v_i
Lasso (L1):             min_x 1/2 ||A x - b||^2 + lam ||x||_1, by proximal gradient (ISTA):
                        x <- soft_threshold(x - step A^T (A x - b), step * lam),  step = 1 / ||A||_2^2

With noise b = A x + N(0, sigma^2 I), a Gaussian prior N(0, tau^2 I) makes ridge the MAP estimate for
lam = sigma^2 / tau^2, a Laplace prior with scale s makes the lasso the MAP estimate for lam = sigma^2 / s.
As lam -> 0 ridge tends to the minimum-norm least-squares solution pinv(A) b. See docs/map.md.
References: Hoerl & Kennard (1970); Tibshirani (1996); Daubechies, Defrise & De Mol (2004) for ISTA;
Beck & Teboulle (2009) for its accelerated form FISTA.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


def _as_array(values: Any, name: str, *, dims: tuple[int, ...]) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in dims:
        expected = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name}: expected a {expected} array, got shape {tuple(array.shape)}")
    return array


def _problem(A: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    A, b = _as_array(A, "A", dims=(2,)), _as_array(b, "b", dims=(1, 2))
    if len(b) != A.shape[0]:
        raise ValueError(f"b: expected {A.shape[0]} rows (one per row of A), got {len(b)}")
    return A, b


def _check_lam(lam: float, *, positive: bool = False) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating)) or not np.isfinite(lam):
        raise TypeError(f"lam: expected a real number, got {lam!r}")
    if lam < 0 or (positive and lam == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"lam: expected lam {bound}, got {lam}")
    return float(lam)


def ridge(A: Any, b: Any, lam: float, *, method: str = "svd", rcond: float | None = None) -> np.ndarray:
    """Minimizer of `||A x - b||^2 + lam ||x||^2`: `(A^T A + lam I)^-1 A^T b`.

    method="svd" (default, stable): `x = sum_i s_i / (s_i^2 + lam) (u_i^T b) v_i` from A = U S V^T,
    over the singular values above `rcond * s_max` (default rcond: machine epsilon * max(N, D), as
    numpy's lstsq); the others are rounding noise of exact zeros, and at lam = 0 this is pinv(A) b.
    method="normal": solves the normal equations `(A^T A + lam I) x = A^T b` (needs lam > 0); they
    square the condition number, so they lose digits for small lam.
    A: [N, D], b: [N] or [N, K] (K right-hand sides). Returns x: [D] or [D, K].
    """
    A, b = _problem(A, b)
    if method == "normal":
        lam = _check_lam(lam, positive=True)
        return np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ b)
    if method != "svd":
        raise ValueError(f"method: expected 'svd' or 'normal', got {method!r}")
    lam = _check_lam(lam)
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    rcond = np.finfo(np.float64).eps * max(A.shape) if rcond is None else rcond
    keep = s > rcond * (s[0] if s.size else 0.0)  # numerical rank: rounding-level s_i are zeros
    filt = np.divide(s, s * s + lam, out=np.zeros_like(s), where=keep)
    coef = U.T @ b  # u_i^T b
    return Vt.T @ (filt[:, None] * coef if coef.ndim == 2 else filt * coef)


def ridge_map(A: Any, b: Any, *, noise_std: float, prior_std: float) -> np.ndarray:
    """MAP estimate of x for `b = A x + N(0, noise_std^2 I)`, `x ~ N(0, prior_std^2 I)`: ridge with
    `lam = noise_std^2 / prior_std^2`."""
    for name, value in (("noise_std", noise_std), ("prior_std", prior_std)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}: expected a positive standard deviation, got {value!r}")
    return ridge(A, b, noise_std**2 / prior_std**2)


def soft_threshold(v: np.ndarray, threshold: float) -> np.ndarray:
    """Proximal map of `threshold * ||.||_1`: `sign(v) * max(|v| - threshold, 0)` (entries in the band -> 0)."""
    return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)


def lasso_objective(A: Any, b: Any, x: Any, lam: float) -> float:
    """`1/2 ||A x - b||^2 + lam ||x||_1` (scikit-learn's Lasso minimizes this divided by N, alpha = lam / N)."""
    A, b = _problem(A, b)
    x = _as_array(x, "x", dims=(1, 2))
    return float(0.5 * np.sum((A @ x - b) ** 2) + lam * np.sum(np.abs(x)))


def lasso_ista(
    A: Any,
    b: Any,
    lam: float,
    *,
    max_iter: int = 10000,
    tol: float = 1e-10,
    accelerated: bool = False,
    x0: Any = None,
) -> np.ndarray:
    """Minimizer of `1/2 ||A x - b||^2 + lam ||x||_1` by proximal gradient descent (ISTA).

    `x <- soft_threshold(x - step A^T (A x - b), step * lam)` with step = 1 / ||A||_2^2 (the inverse
    Lipschitz constant of the smooth part); `accelerated=True` adds FISTA's momentum. Stops when a step
    moves x by less than `tol * (1 + max|x|)`, and warns when `max_iter` runs out first.
    A: [N, D], b: [N]. Returns x: [D], with exact zeros where |A^T (A x - b)| <= lam.
    """
    A, b = _problem(A, b)
    if b.ndim != 1:
        raise ValueError(f"b: expected a 1-D array [N] for lasso_ista, got shape {tuple(b.shape)}")
    lam = _check_lam(lam)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
    lipschitz = np.linalg.norm(A, 2) ** 2
    if lipschitz == 0:
        return np.zeros(A.shape[1])
    step = 1.0 / lipschitz
    x = np.zeros(A.shape[1]) if x0 is None else _as_array(x0, "x0", dims=(1,)).copy()
    if x.shape != (A.shape[1],):
        raise ValueError(f"x0: expected shape ({A.shape[1]},), got {x.shape}")
    y, momentum = x.copy(), 1.0
    for _ in range(max_iter):
        x_new = soft_threshold(y - step * (A.T @ (A @ y - b)), step * lam)
        if accelerated:
            momentum_new = (1.0 + np.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
            y = x_new + (momentum - 1.0) / momentum_new * (x_new - x)
            momentum = momentum_new
        else:
            y = x_new
        moved = np.max(np.abs(x_new - x))
        x = x_new
        if moved <= tol * (1.0 + np.max(np.abs(x))):
            return x
    warnings.warn(f"lasso_ista: stopped at max_iter={max_iter} before reaching tol={tol}", RuntimeWarning, stacklevel=2)
    return x
