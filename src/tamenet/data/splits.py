"""Train/validation/test splits (B1) and the standardized tensors the training loop consumes (A6).

The test split is drawn first from all rows (share ``test``), then validation takes share ``val``
of the remainder; classification splits are stratified by class (scikit-learn ``train_test_split``).
A share of 0 leaves that part empty. A predefined split replaces the shares: a file's
``data.split`` column, or the caller's arrays per part (`assign_rows`). Scalers are fitted on the
training split only, so validation and test stay unseen.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tamenet.config import DataConfig, RecipeError
from tamenet.data.datasets import Dataset, dataset_from_arrays, fingerprint, load_dataset
from tamenet.data.files import SPLIT_VALUES
from tamenet.data.parts import PART_ARGUMENTS, join_parts
from tamenet.data.scaling import Standardizer

PREPROCESSING_KEYS = ("task", "n_features", "n_outputs", "scaler", "target_scaler", "classes", "feature_names",
                      "image_shape")
"""The keys of `SplitData.preprocessing`, all needed by `SplitData.transform_inputs`."""


def split_indices(
    y: np.ndarray, task: str, *, val: float, test: float, seed: int, stratify: bool, classes: tuple | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted, disjoint (train, val, test) row indices covering ``range(len(y))``.

    ``n_test = ceil(test * N)`` rows first (none when ``test == 0``), then ``ceil(val * rest)`` of the
    remaining rows for validation (none when ``val == 0``: every other row trains); stratified by class
    when ``stratify`` and ``task == "classification"``.
    ``classes`` (original labels of the indices in ``y``) only makes error messages name the real labels.
    """
    if not 0.0 <= val < 1.0:
        raise ValueError(f"data.val: expected a share in [0, 1), got {val!r}")
    if not 0.0 <= test < 1.0:
        raise ValueError(f"data.test: expected a share in [0, 1), got {test!r}")
    y = np.asarray(y)
    n = len(y)
    everything = np.arange(n, dtype=np.int64)
    by_class = stratify and task == "classification"
    if test > 0:
        rest, test_idx = _split(everything, y, share=test, seed=seed, by_class=by_class, part="test",
                                whole="all rows", classes=classes)
    else:
        rest, test_idx = everything, everything[:0]
    if val > 0:
        train_idx, val_idx = _split(rest, y, share=val, seed=seed, by_class=by_class, part="validation",
                                    whole="the rows left after the test split", classes=classes)
    else:
        train_idx, val_idx = rest, rest[:0]
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)


@dataclass(frozen=True, eq=False)
class RowSplit:
    """Which rows of the loaded data set went to each part, and what decided it.

    ``source``: ``"shares"`` (drawn by ``data.val`` / ``data.test``), ``"column"`` (the file's
    ``data.split`` column or array, named in ``column``) or ``"caller"`` (arrays per part passed to
    `prepare` / `tamenet.fit`: rows are numbered train part first, then val, then test).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str
    column: str | None = None
    shares: dict[str, Any] = field(default_factory=dict)  # source "shares": val, test, seed, stratify

    def sizes(self) -> dict[str, int]:
        """Rows per part: ``{"train": n, "val": n, "test": n}``."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def describe(self) -> dict[str, Any]:
        """JSON-able: what decided the split, and the part sizes (no row indices)."""
        out: dict[str, Any] = {"source": self.source}
        if self.column is not None:
            out["column"] = self.column
        if self.shares:
            out["shares"] = dict(self.shares)
        if self.source == "caller":
            out["given_by"] = "the caller (arrays per part passed to fit)"
        out["sizes"] = self.sizes()
        return out

    def record(self) -> dict[str, Any]:
        """JSON-able `describe` plus each part's row indices into the loaded data set (a run's split.json).

        For the caller's arrays the parts are the caller's own; only their sizes are recorded.
        """
        out = self.describe()
        if self.source != "caller":
            out.update({part: getattr(self, part).tolist() for part in SPLIT_VALUES})
        return out

    def to_json(self) -> str:
        """`record` as JSON text: one key per line, each part's row indices on a single line."""
        lines = [f"  {json.dumps(key)}: {json.dumps(value, separators=(', ', ': '))}"
                 for key, value in self.record().items()]
        return "{\n" + ",\n".join(lines) + "\n}\n"


def rows_from_marks(marks: np.ndarray, *, source: str, column: str | None = None) -> RowSplit:
    """A `RowSplit` from one ``train`` / ``val`` / ``test`` mark per row (indices ascending)."""
    marks = np.asarray(marks)
    parts = {part: np.flatnonzero(marks == part).astype(np.int64) for part in SPLIT_VALUES}
    return RowSplit(parts["train"], parts["val"], parts["test"], source=source, column=column)


def assign_rows(cfg: DataConfig, *, X: Any = None, y: Any = None, X_val: Any = None, y_val: Any = None,
                X_test: Any = None, y_test: Any = None) -> tuple[Dataset, RowSplit]:
    """The raw data set ``cfg`` names (or the caller's arrays) and which of its rows go to each part.

    Without a predefined split the shares ``cfg.val`` / ``cfg.test`` draw the parts (`split_indices`).
    With one (a file's ``data.split`` column, or ``X_val`` / ``X_test`` arrays beside ``X``, ``y``),
    its marks decide and the shares are not used: a recipe that changes ``data.val`` or
    ``data.test`` from the default then is refused (`RecipeError`), so no share is silently ignored.
    """
    if not isinstance(cfg, DataConfig):
        raise TypeError(f"assign_rows: expected a DataConfig, got {type(cfg).__name__}")
    parts = {"train": (X, y), "val": (X_val, y_val), "test": (X_test, y_test)}
    given = {name: pair for name, pair in parts.items() if pair[0] is not None or pair[1] is not None}
    if given and cfg.path is not None:
        raise ValueError("prepare: got arrays X, y and also data.path; pass one source of data")
    if given and cfg.split is not None:
        raise RecipeError(f"data.split: names a column of a data file ('{cfg.split}'), but arrays were passed; "
                          "pass each part's arrays (X_val, y_val, X_test, y_test) instead")
    if given.keys() == {"train"}:  # the caller's rows, split by the shares
        if (X is None) != (y is None):
            raise TypeError("prepare: expected both X and y, or neither (to load the data set the recipe names)")
        data = dataset_from_arrays(X, y, task=cfg.task, name="arrays")
        return data, _by_shares(data, cfg)
    if given:
        _check_shares_unused(cfg, "arrays for each part (" + ", ".join(PART_ARGUMENTS[n][0] for n in given) + ")")
        X_all, y_all, marks = join_parts(given)
        data = dataset_from_arrays(X_all, y_all, task=cfg.task, name="arrays")
        return data, rows_from_marks(marks, source="caller")
    data = load_dataset(cfg)
    if data.split is None:
        return data, _by_shares(data, cfg)
    _check_shares_unused(cfg, f"data.split ('{cfg.split}')")
    return data, rows_from_marks(data.split, source="column", column=cfg.split)


def _by_shares(data: Dataset, cfg: DataConfig) -> RowSplit:
    if data.groups is not None:  # whole groups (speakers, sources) to each part
        from .groups import group_split_indices

        train, val, test = group_split_indices(data.groups, val=cfg.val, test=cfg.test, seed=cfg.seed)
        shares = {"val": cfg.val, "test": cfg.test, "seed": cfg.seed, "groups": cfg.groups}
        return RowSplit(train, val, test, source="shares", shares=shares)
    train, val, test = split_indices(data.y, data.task, val=cfg.val, test=cfg.test, seed=cfg.seed,
                                     stratify=cfg.stratify, classes=data.classes)
    shares = {"val": cfg.val, "test": cfg.test, "seed": cfg.seed, "stratify": cfg.stratify}
    return RowSplit(train, val, test, source="shares", shares=shares)


def _check_shares_unused(cfg: DataConfig, what: str) -> None:
    """Refuse data.val / data.test changed from their defaults when a predefined split decides the rows."""
    defaults = DataConfig()
    for key in ("val", "test"):
        value, default = getattr(cfg, key), getattr(defaults, key)
        if value != default:
            raise RecipeError(
                f"data.{key}: the split is predefined by {what}, so the share is not used; "
                f"expected data.{key} left at its default {default}, got {value!r} (remove it)"
            )


def _split(idx: np.ndarray, y: np.ndarray, *, share: float, seed: int, by_class: bool, part: str, whole: str,
           classes: tuple | None):
    n = len(idx)
    n_part = math.ceil(round(share * n, 9))  # round: 0.3 * 100 is 30.000000000000004 in floats
    if n_part == 0 or n - n_part == 0:
        empty = part if n_part == 0 else "training"
        raise ValueError(
            f"the {empty} split would be empty: {part} share {share} of {n} rows ({whole}) gives "
            f"{n_part} {part} and {n - n_part} other rows; use more data or another share"
        )
    from sklearn.model_selection import train_test_split  # imported here: slow, and not needed to predict

    labels = y[idx] if by_class else None
    if by_class:
        values, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            named = [classes[v] if classes is not None else v for v in values.tolist()]
            few = ", ".join(f"'{v}' ({c})" for v, c in zip(named, counts.tolist()) if c < 2)
            raise ValueError(
                f"cannot stratify the {part} split: class(es) {few} have fewer than 2 samples in {whole}; "
                "stratifying needs at least 2 per class (set data.stratify: false, or add samples)"
            )
        k = len(values)
        if n_part < k or n - n_part < k:
            small = min(n_part, n - n_part)
            raise ValueError(
                f"cannot stratify the {part} split: {small} rows cannot hold one of each of {k} classes "
                f"({part} share {share} of {n} rows); raise the share, or set data.stratify: false"
            )
    keep, taken = train_test_split(idx, test_size=n_part, random_state=seed, shuffle=True, stratify=labels)
    return np.asarray(keep, dtype=np.int64), np.asarray(taken, dtype=np.int64)


@dataclass(eq=False)
class SplitData:
    """Standardized train/val/test tensors (X float32; y int64 classes or float32 [N] targets) and what made them."""

    name: str
    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_features: int
    n_outputs: int  # number of classes, or 1 for regression
    classes: tuple | None
    feature_names: tuple[str, ...]
    image_shape: tuple[int, ...] | None
    scaler: Standardizer | None  # None when data.standardize is false
    target_scaler: Standardizer | None  # regression with data.standardize: y in train-standardized units
    fingerprint: str  # sha256 of the raw X and y (shapes, dtypes, bytes), and of a predefined split's marks
    rows: RowSplit | None = None  # which rows of the loaded data set went to each part

    @property
    def target_std(self) -> float:
        """The regression target's training standard deviation (RMSE back in its own units), else 1."""
        return float(self.target_scaler.std.reshape(-1)[0]) if self.target_scaler is not None else 1.0

    def sizes(self) -> dict[str, int]:
        """Rows per split: ``{"train": n, "val": n, "test": n}``."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def preprocessing(self) -> dict[str, Any]:
        """JSON-able record of the preprocessing, enough for `transform_inputs` at predict time."""
        return {
            "task": self.task,
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
            "target_scaler": None if self.target_scaler is None else self.target_scaler.to_dict(),
            "classes": None if self.classes is None else list(self.classes),
            "feature_names": list(self.feature_names),
            "image_shape": None if self.image_shape is None else list(self.image_shape),
        }

    @staticmethod
    def transform_inputs(pre: dict[str, Any], X: Any) -> torch.Tensor:
        """Apply saved preprocessing to new raw inputs: float32 [N, F] tensor, standardized as in training.

        X may be [N, F], [N, ...] (flattened, e.g. images), or one row [F]; a different number of
        features is an error naming both numbers.
        """
        if not isinstance(pre, dict):
            raise TypeError(f"transform_inputs: expected the dict from SplitData.preprocessing(), got {type(pre).__name__}")
        missing = [key for key in ("n_features", "scaler") if key not in pre]
        if missing:
            raise ValueError(f"transform_inputs: preprocessing record lacks key(s) {', '.join(missing)}")
        n_features = int(pre["n_features"])
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
            raise TypeError(f"transform_inputs: expected numeric inputs, got dtype {X.dtype}")
        if X.ndim == 0:
            raise ValueError(f"transform_inputs: expected inputs of shape [N, {n_features}], got a scalar")
        if X.ndim == 1:
            X = X[:, None] if n_features == 1 else X[None, :]
        X = X.reshape(X.shape[0], -1)
        if X.shape[1] != n_features:
            raise ValueError(
                f"transform_inputs: expected {n_features} features per row (as in training), "
                f"received {X.shape[1]} (input shape {X.shape})"
            )
        X = X.astype(np.float32)
        if not np.isfinite(X).all():
            raise ValueError("transform_inputs: expected finite inputs, got NaN or infinite values")
        if pre["scaler"] is not None:
            X = Standardizer.from_dict(pre["scaler"]).transform(X)
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))


def prepare(cfg: DataConfig, *, X: Any = None, y: Any = None, X_val: Any = None, y_val: Any = None,
            X_test: Any = None, y_test: Any = None) -> SplitData:
    """Load (or take ``X``, ``y``), split and standardize the data as ``cfg`` says.

    With arrays, ``cfg.task`` applies (``auto``: integer/bool/string labels with at most 50 distinct
    values are classes) and the data set is named ``arrays``; ``X_val``, ``y_val`` and ``X_test``,
    ``y_test`` (each pair optional) make ``X``, ``y`` exactly the training rows and those the
    validation and test rows (a part not given is empty). Scalers are fitted on the training rows
    only; ``cfg.standardize`` also standardizes a regression target (``target_scaler``).
    """
    if not isinstance(cfg, DataConfig):
        raise TypeError(f"prepare: expected a DataConfig, got {type(cfg).__name__}")
    data, parts = assign_rows(cfg, X=X, y=y, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test)
    train, val, test = parts.train, parts.val, parts.test
    if data.featurize is not None:  # text: features over the vocabulary of the training rows only
        data = data.featurize(train)
    scaler = Standardizer.fit(data.X[train]) if cfg.standardize else None
    regression = data.task == "regression"
    target_scaler = Standardizer.fit(data.y[train]) if cfg.standardize and regression else None

    def inputs(idx: np.ndarray) -> torch.Tensor:
        rows = data.X[idx] if scaler is None else scaler.transform(data.X[idx])
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))

    def targets(idx: np.ndarray) -> torch.Tensor:
        if data.task == "dense":  # a 0/1 value per pixel (digits_masks): float targets [n, P], never scaled
            return torch.from_numpy(np.ascontiguousarray(data.y[idx], dtype=np.float32))
        if not regression:
            return torch.from_numpy(np.ascontiguousarray(data.y[idx], dtype=np.int64))
        values = data.y[idx] if target_scaler is None else target_scaler.transform(data.y[idx])
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    marks = None if parts.source == "shares" else _marks(parts, len(data.y))
    return SplitData(
        name=data.name,
        task=data.task,
        X_train=inputs(train), y_train=targets(train),
        X_val=inputs(val), y_val=targets(val),
        X_test=inputs(test), y_test=targets(test),
        n_features=int(data.X.shape[1]),
        n_outputs=1 if regression else (data.y.shape[1] if data.task == "dense" else len(data.classes or ())),
        classes=data.classes,
        feature_names=data.feature_names,
        image_shape=data.image_shape,
        scaler=scaler,
        target_scaler=target_scaler,
        fingerprint=fingerprint(data.X, data.y, marks),
        rows=parts,
    )


def _marks(rows: RowSplit, n: int) -> np.ndarray:
    """One part name per row of the data set, from a `RowSplit`."""
    marks = np.full(n, "", dtype="<U5")
    for part in SPLIT_VALUES:
        marks[getattr(rows, part)] = part
    return marks
