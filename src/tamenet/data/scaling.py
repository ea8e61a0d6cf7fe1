"""Per-feature standardization fitted on the training split only (SPEC A6).

``z = (x - mu) / sigma`` with ``mu``, ``sigma`` the training split's column means and population
standard deviations (``ddof=0``, as scikit-learn's ``StandardScaler``); a constant column gets
``sigma = 1`` so it maps to 0 instead of dividing by zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


@dataclass
class Standardizer:
    """Column-wise ``(x - mean) / std``; ``mean``/``std`` are float64 arrays of shape [F] (or [] for a 1-D target).

    Reference: LeCun, Bottou, Orr, Mueller, "Efficient BackProp" (1998), section 4.3 (normalizing the inputs).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray | torch.Tensor) -> "Standardizer":
        """Fit on the rows of ``X`` ([N, F], or [N] for a regression target); a constant column gets std 1."""
        data = _as_float64(X, "Standardizer.fit")
        if data.ndim not in (1, 2):
            raise ValueError(f"Standardizer.fit: expected an array of shape [N, F] or [N], got shape {tuple(data.shape)}")
        if data.shape[0] == 0:
            raise ValueError("Standardizer.fit: expected at least one row, got an empty array")
        if not np.all(np.isfinite(data)):
            raise ValueError("Standardizer.fit: expected finite values, got NaN or infinity")
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        constant = (np.ptp(data, axis=0) == 0) | (std <= 1e-10 * np.abs(mean))
        std = np.where(constant, 1.0, std)
        return cls(mean=np.asarray(mean, dtype=np.float64), std=np.asarray(std, dtype=np.float64))

    @property
    def n_features(self) -> int | None:
        """F, or None for a scaler fitted on a 1-D target."""
        return None if self.mean.ndim == 0 else int(self.mean.shape[0])

    def transform(self, X: ArrayLike) -> ArrayLike:
        """``(X - mean) / std`` as the same kind of array (numpy or torch); integer input becomes float32."""
        return self._apply(X, inverse=False)

    def inverse(self, X: ArrayLike) -> ArrayLike:
        """``X * std + mean``: undo `transform`."""
        return self._apply(X, inverse=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form: ``{"mean": [...], "std": [...]}`` (plain floats for a 1-D target)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Standardizer":
        """Rebuild from `to_dict`'s output."""
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            shown = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"Standardizer.from_dict: expected a dict with keys 'mean' and 'std', got {shown}")
        mean = np.asarray(d["mean"], dtype=np.float64)
        std = np.asarray(d["std"], dtype=np.float64)
        if mean.shape != std.shape or mean.ndim > 1:
            raise ValueError(
                f"Standardizer.from_dict: expected 'mean' and 'std' of the same length, "
                f"got shapes {mean.shape} and {std.shape}"
            )
        if np.any(std <= 0) or not np.all(np.isfinite(std)):
            raise ValueError("Standardizer.from_dict: expected positive finite 'std' values")
        return cls(mean=mean, std=std)

    def _apply(self, X: ArrayLike, *, inverse: bool) -> ArrayLike:
        n = self.n_features
        if n is not None and (X.ndim == 0 or X.shape[-1] != n):
            got = "a scalar" if X.ndim == 0 else f"{X.shape[-1]} (shape {tuple(X.shape)})"
            raise ValueError(f"Standardizer: expected {n} features in the last dimension, received {got}")
        if isinstance(X, torch.Tensor):
            if not torch.is_floating_point(X):
                X = X.to(torch.float32)
            mean = torch.as_tensor(self.mean, dtype=X.dtype, device=X.device)
            std = torch.as_tensor(self.std, dtype=X.dtype, device=X.device)
            return X * std + mean if inverse else (X - mean) / std
        if isinstance(X, np.ndarray):
            dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.dtype(np.float32)
            data = X.astype(np.float64, copy=False)
            out = data * self.std + self.mean if inverse else (data - self.mean) / self.std
            return out.astype(dtype, copy=False)
        raise TypeError(f"Standardizer: expected a numpy array or a torch tensor, got {type(X).__name__}")


def _as_float64(X: Any, where: str) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array or a torch tensor, got {type(X).__name__}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise TypeError(f"{where}: expected numeric values, got dtype {X.dtype}")
    return X.astype(np.float64, copy=False)
