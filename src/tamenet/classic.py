"""Single-layer learning rules from before backpropagation (seed 004, lecture 2, section 5.3).

A unit computes `net = <w, x>` on inputs extended with a constant bias input `x_0 = 1`
(`w[0]` is the bias). Three rules, each a function and a small class with `fit` / `predict`:

* Hebb (1949), bipolar inputs and targets in {-1, 1}: `w <- w + eta * x * y`. In one pass over the
  data this is `w = eta * sum_k y_k x_k`. The lecture's form updates only on a mistake,
  `if y <w, x> < 0: w <- w + eta * x * y` (`mistake_driven=True`; `<= 0` here, since from w = 0
  the strict test never fires).
* Rosenblatt's perceptron (1957), targets in {0, 1}, threshold output `a = 1[<w, x> > 0]`:
  `w <- w + eta * (t - a) x`; stops after an epoch without errors or at `max_epochs`. It reaches zero
  errors in finitely many steps exactly when the classes are linearly separable (Novikoff, 1962);
  XOR is not (Minsky & Papert, 1969).
* Widrow-Hoff delta rule (1960, Adaline / LMS), real targets: `w <- w + eta * (t - <w, x>) x`, the
  stochastic gradient of `1/2 (t - <w, x>)^2`. Its batch form `w <- w + eta/N * X^T (t - X w)`
  converges to the least-squares solution for `0 < eta < 2 / lambda_max(X^T X / N)`.

Inputs may be numpy arrays, torch tensors or nested lists; results are float64 numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _as_array(values: Any, name: str, *, dim: int) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != dim:
        shape = "[N, F] (samples x features)" if dim == 2 else "[N] (one target per sample)"
        raise ValueError(f"{name}: expected a {dim}-D array {shape}, got shape {tuple(array.shape)}")
    return array


def _check_data(X: Any, y: Any, *, allowed: tuple[float, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    X, y = _as_array(X, "X", dim=2), _as_array(y, "y", dim=1)
    if len(X) != len(y):
        raise ValueError(f"X and y: expected the same number of samples, got {len(X)} and {len(y)}")
    if len(X) == 0:
        raise ValueError("X: expected at least one sample, got none")
    if allowed is not None:
        bad = ~np.isin(y, allowed)
        if bad.any():
            raise ValueError(f"y: expected targets in {set(allowed)}, got {sorted(set(y[bad].tolist()))[:5]}")
    return X, y


def _check_options(eta: float, max_epochs: int) -> None:
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not eta > 0:
        raise ValueError(f"eta: expected a positive learning rate, got {eta!r}")
    if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 1:
        raise ValueError(f"max_epochs: expected a positive integer, got {max_epochs!r}")


def with_bias(X: Any) -> np.ndarray:
    """Prepend the constant bias input: [N, F] -> [N, 1 + F] with column 0 all ones."""
    X = _as_array(X, "X", dim=2)
    return np.hstack([np.ones((len(X), 1)), X])


def _design(X: np.ndarray, bias: bool) -> np.ndarray:
    return with_bias(X) if bias else X


def _net(w: np.ndarray, X: Any, bias: bool) -> np.ndarray:
    X = _design(_as_array(X, "X", dim=2), bias)
    if X.shape[1] != len(w):
        raise ValueError(f"X: expected {len(w) - int(bias)} features (as in fit), got {X.shape[1] - int(bias)}")
    return X @ w


# --- Hebb ------------------------------------------------------------------------------------------------


def hebb(X: Any, y: Any, *, eta: float = 1.0, bias: bool = True) -> np.ndarray:
    """Hebb's rule in one pass over bipolar data: `w = eta * sum_k y_k x_k` (with `x_0 = 1`).

    Each update `w <- w + eta x_k y_k` ignores the current w, so the pass is one matrix product.
    X: [N, F] in {-1, 1}, y: [N] in {-1, 1}. Returns w [1 + F] (bias first) or [F].
    """
    X, y = _check_data(X, y, allowed=(-1.0, 1.0))
    _check_options(eta, 1)
    if not np.isin(X, (-1.0, 1.0)).all():
        raise ValueError("X: expected bipolar inputs in {-1, 1} for Hebb's rule, got other values")
    return eta * _design(X, bias).T @ y


def hebb_mistake_driven(
    X: Any, y: Any, *, eta: float = 1.0, bias: bool = True, max_epochs: int = 100
) -> tuple[np.ndarray, list[int]]:
    """The lecture's Hebb rule: `if y_k <w, x_k> <= 0: w <- w + eta x_k y_k`, epoch after epoch.

    Stops after an epoch without mistakes. Returns (w, mistakes per epoch). Inputs may be any real
    numbers; targets are in {-1, 1}. This is the perceptron rule written for bipolar outputs.
    """
    X, y = _check_data(X, y, allowed=(-1.0, 1.0))
    _check_options(eta, max_epochs)
    Xb = _design(X, bias)
    w, errors = np.zeros(Xb.shape[1]), []
    for _ in range(max_epochs):
        mistakes = 0
        for x_k, y_k in zip(Xb, y):
            if y_k * (x_k @ w) <= 0:
                w = w + eta * y_k * x_k
                mistakes += 1
        errors.append(mistakes)
        if mistakes == 0:
            break
    return w, errors


class Hebb:
    """Hebbian unit with output `sign(<w, x>)` in {-1, 1}; see `hebb` and `hebb_mistake_driven`."""

    def __init__(self, *, eta: float = 1.0, bias: bool = True, mistake_driven: bool = False, max_epochs: int = 100) -> None:
        _check_options(eta, max_epochs)
        self.eta, self.bias, self.mistake_driven, self.max_epochs = eta, bias, mistake_driven, max_epochs
        self.weights_: np.ndarray | None = None
        self.errors_: list[int] = []

    def fit(self, X: Any, y: Any) -> list[int]:
        """Learn w; returns the misclassified samples per epoch (one entry for the one-pass rule)."""
        if self.mistake_driven:
            self.weights_, self.errors_ = hebb_mistake_driven(
                X, y, eta=self.eta, bias=self.bias, max_epochs=self.max_epochs
            )
        else:
            self.weights_ = hebb(X, y, eta=self.eta, bias=self.bias)
            self.errors_ = [int((self.predict(X) != _as_array(y, "y", dim=1)).sum())]
        return self.errors_

    def predict(self, X: Any) -> np.ndarray:
        """`sign(<w, x>)` in {-1, 1} (a zero net input counts as -1)."""
        if self.weights_ is None:
            raise ValueError("Hebb.predict: expected a fitted unit, got one without weights (call fit first)")
        return np.where(_net(self.weights_, X, self.bias) > 0, 1.0, -1.0)


# --- Rosenblatt's perceptron ---------------------------------------------------------------------------


def perceptron(
    X: Any,
    y: Any,
    *,
    eta: float = 1.0,
    max_epochs: int = 100,
    bias: bool = True,
    shuffle: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, list[int]]:
    """Rosenblatt's rule for a threshold unit `a = 1[<w, x> > 0]`: `w <- w + eta (t - a) x`, from w = 0.

    Samples are visited in order (or shuffled each epoch with `seed`). Stops after an epoch with no
    errors or after `max_epochs`. Returns (w, errors per epoch), y in {0, 1}.
    """
    X, y = _check_data(X, y, allowed=(0.0, 1.0))
    _check_options(eta, max_epochs)
    Xb = _design(X, bias)
    w, errors = np.zeros(Xb.shape[1]), []
    rng = np.random.default_rng(seed)
    for _ in range(max_epochs):
        order = rng.permutation(len(Xb)) if shuffle else range(len(Xb))
        mistakes = 0
        for k in order:
            out = 1.0 if Xb[k] @ w > 0 else 0.0
            if out != y[k]:
                w = w + eta * (y[k] - out) * Xb[k]
                mistakes += 1
        errors.append(mistakes)
        if mistakes == 0:
            break
    return w, errors


class Perceptron:
    """Rosenblatt's perceptron with {0, 1} outputs; `fit` returns the errors per epoch."""

    def __init__(
        self, *, eta: float = 1.0, max_epochs: int = 100, bias: bool = True, shuffle: bool = False, seed: int = 0
    ) -> None:
        _check_options(eta, max_epochs)
        self.eta, self.max_epochs, self.bias, self.shuffle, self.seed = eta, max_epochs, bias, shuffle, seed
        self.weights_: np.ndarray | None = None
        self.errors_: list[int] = []

    @property
    def epochs_(self) -> int:
        """Epochs run (the last one error-free when `converged_`)."""
        return len(self.errors_)

    @property
    def converged_(self) -> bool:
        return bool(self.errors_) and self.errors_[-1] == 0

    def fit(self, X: Any, y: Any) -> list[int]:
        self.weights_, self.errors_ = perceptron(
            X, y, eta=self.eta, max_epochs=self.max_epochs, bias=self.bias, shuffle=self.shuffle, seed=self.seed
        )
        return self.errors_

    def predict(self, X: Any) -> np.ndarray:
        """`1[<w, x> > 0]` in {0, 1}."""
        if self.weights_ is None:
            raise ValueError("Perceptron.predict: expected a fitted unit, got one without weights (call fit first)")
        return (_net(self.weights_, X, self.bias) > 0).astype(np.float64)


# --- Widrow-Hoff delta rule (Adaline / LMS) -----------------------------------------------------------


def delta_rule(
    X: Any,
    t: Any,
    *,
    eta: float = 0.01,
    max_epochs: int = 1000,
    bias: bool = True,
    mode: str = "online",
    tol: float = 1e-12,
    seed: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """Widrow-Hoff: minimize `1/2 mean_k (t_k - <w, x_k>)^2` by gradient steps from w = 0.

    mode="online" (LMS): `w <- w + eta (t_k - <w, x_k>) x_k`, samples shuffled each epoch with `seed`;
    with a constant eta it ends within O(eta) of the least-squares solution when the data are noisy.
    mode="batch": `w <- w + eta/N X^T (t - X w)`, converging to the least-squares solution.
    Stops when an epoch moves w by less than `tol * (1 + max|w|)`. Returns (w, mean squared error
    before each epoch's updates). A step size that would diverge raises ValueError.
    """
    X, t = _check_data(X, t, allowed=None)
    _check_options(eta, max_epochs)
    if mode not in ("online", "batch"):
        raise ValueError(f"mode: expected 'online' or 'batch', got {mode!r}")
    Xb = _design(X, bias)
    n = len(Xb)
    if mode == "batch":
        limit = 2.0 / np.linalg.eigvalsh(Xb.T @ Xb / n)[-1]
        what = "2 / lambda_max(X^T X / N)"
    else:
        limit = 2.0 / np.max(np.sum(Xb * Xb, axis=1))
        what = "2 / max_k ||x_k||^2"
    if eta >= limit:
        raise ValueError(f"eta: expected eta < {what} = {limit:.4g} for the {mode} delta rule to converge, got {eta}")
    w, mse = np.zeros(Xb.shape[1]), []
    rng = np.random.default_rng(seed)
    for _ in range(max_epochs):
        mse.append(float(np.mean((t - Xb @ w) ** 2)))
        before = w
        if mode == "batch":
            w = w + eta / n * Xb.T @ (t - Xb @ w)
        else:
            for k in rng.permutation(n):
                w = w + eta * (t[k] - Xb[k] @ w) * Xb[k]
        if np.max(np.abs(w - before)) <= tol * (1.0 + np.max(np.abs(w))):
            break
    return w, mse


class Adaline:
    """Adaptive linear neuron trained with the delta rule; `predict` is the linear output `<w, x>`."""

    def __init__(
        self,
        *,
        eta: float = 0.01,
        max_epochs: int = 1000,
        bias: bool = True,
        mode: str = "online",
        tol: float = 1e-12,
        seed: int = 0,
    ) -> None:
        _check_options(eta, max_epochs)
        if mode not in ("online", "batch"):
            raise ValueError(f"mode: expected 'online' or 'batch', got {mode!r}")
        self.eta, self.max_epochs, self.bias, self.mode, self.tol, self.seed = eta, max_epochs, bias, mode, tol, seed
        self.weights_: np.ndarray | None = None
        self.mse_: list[float] = []

    def fit(self, X: Any, t: Any) -> list[float]:
        """Learn w; returns the mean squared error at the start of each epoch."""
        self.weights_, self.mse_ = delta_rule(
            X, t, eta=self.eta, max_epochs=self.max_epochs, bias=self.bias, mode=self.mode, tol=self.tol, seed=self.seed
        )
        return self.mse_

    def predict(self, X: Any) -> np.ndarray:
        if self.weights_ is None:
            raise ValueError("Adaline.predict: expected a fitted unit, got one without weights (call fit first)")
        return _net(self.weights_, X, self.bias)

    def classify(self, X: Any) -> np.ndarray:
        """Widrow and Hoff's quantized output `sign(<w, x>)` in {-1, 1} (zero counts as -1)."""
        return np.where(self.predict(X) > 0, 1.0, -1.0)
