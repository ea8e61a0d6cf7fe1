"""The caller's own split: arrays for each part (train, and optionally val and test) joined into one data set.

`join_parts` checks that the parts agree (the same features per row, one target per row) and
stacks them, train rows first, then validation, then test, with one ``train`` / ``val`` / ``test``
mark per row, so they take the same road as a file's split column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PART_ARGUMENTS = {"train": ("X", "y"), "val": ("X_val", "y_val"), "test": ("X_test", "y_test")}
"""Each part's argument names in `tamenet.fit` and `tamenet.data.prepare`."""


def join_parts(parts: dict[str, tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, marks): the parts' rows stacked in the order train, val, test and each row's part name.

    `parts` maps ``"train"`` (required), ``"val"``, ``"test"`` to ``(X, y)`` arrays, tensors or lists;
    a part may be left out (or have zero rows). Every part must have the training part's shape per
    row and as many targets as rows; each mismatch is one `ValueError` naming both shapes.
    """
    if "train" not in parts:
        raise ValueError("data arrays: X_val / X_test were given without X, y (the training rows); pass X and y too")
    unknown = sorted(set(parts) - set(PART_ARGUMENTS))
    if unknown:
        raise ValueError(f"data arrays: unknown part(s) {', '.join(unknown)} (valid: {', '.join(PART_ARGUMENTS)})")
    arrays = {name: _part(name, *parts[name]) for name in PART_ARGUMENTS if name in parts}
    x_name = PART_ARGUMENTS["train"][0]
    row_shape = arrays["train"][0].shape[1:]
    if len(arrays["train"][0]) == 0:
        raise ValueError("data arrays: X (the training rows) has no rows; expected at least one")
    for name, (X, _) in arrays.items():
        if X.shape[1:] != row_shape:
            raise ValueError(
                f"data arrays: expected rows of shape {list(row_shape)} in {PART_ARGUMENTS[name][0]} as in {x_name} "
                f"(the same features in every part), got rows of shape {list(X.shape[1:])} "
                f"(array shape {list(X.shape)})"
            )
    X = np.concatenate([X for X, _ in arrays.values()])
    y = np.concatenate([y for _, y in arrays.values()])
    marks = np.concatenate([np.full(len(y_part), name) for name, (_, y_part) in arrays.items()]).astype(str)
    return X, y, marks


def _part(name: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """One part's X (1-D: one feature per row) and y ([N] or [N, 1]) as numpy, with their row counts checked."""
    x_name, y_name = PART_ARGUMENTS[name]
    if (X is None) != (y is None):
        given, missing = (x_name, y_name) if y is None else (y_name, x_name)
        raise ValueError(f"data arrays: got {given} without {missing}; expected both or neither")
    X, y = _numpy(X, x_name), _numpy(y, y_name)
    if X.ndim == 0:
        raise ValueError(f"data arrays: expected {x_name} with one row per sample, got a scalar")
    if X.ndim == 1:
        X = X[:, None]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"data arrays: expected {y_name} of shape [N] (one target per row), got shape {list(y.shape)}")
    if len(X) != len(y):
        raise ValueError(
            f"data arrays: {x_name} has {len(X)} rows but {y_name} has {len(y)} targets; expected one target per row"
        )
    return X, y


def _numpy(values: Any, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, (np.ndarray, list, tuple)):
        return np.asarray(values)
    raise TypeError(f"{what}: expected a numpy array, torch tensor or list, got {type(values).__name__}")
