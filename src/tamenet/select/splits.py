"""Validation schemes (B1, B2) as pure functions: rows of a pool -> [(train rows, scored rows), ...].

scikit-learn's splitters draw the folds. Every scheme returns training sets of one size, so the
folds train side by side as members of one population with dense batches: k-fold keeps
floor(N / k) scored rows in every fold (the N mod k leftover rows always train and are never
scored, at most k - 1 of them), and the bootstrap's out-of-bag scored sets may differ in size.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import lookup
from .options import MAX_SPLITS

Fold = tuple[np.ndarray, np.ndarray]


def _balanced(folds: list[Fold], n: int, y: np.ndarray | None = None) -> list[Fold]:
    """Trim every scored set to the smallest one's size (trimmed rows train in that fold).

    With labels `y` (stratified folds) the trimmed rows come from the classes furthest above their
    exact share of the trimmed size, so every class keeps within one row of its share N_c / k (as in
    scikit-learn's untrimmed folds); trimming the last rows regardless of class could take almost two.
    """
    size = min(len(scored) for _, scored in folds)
    out = []
    for _, scored in folds:
        keep = np.sort(scored[:size] if y is None or len(scored) == size else _trim_by_class(scored, y, size))
        train = np.setdiff1d(np.arange(n), keep)
        out.append((train, keep))
    return out


def _trim_by_class(scored: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """`size` of the `scored` rows, dropping one row at a time from the class most above its share of `size`."""
    classes, totals = np.unique(y, return_counts=True)
    labels = y[scored]
    counts = np.array([np.sum(labels == c) for c in classes])
    exact = size * totals / len(y)
    for _ in range(len(scored) - size):
        counts[np.argmax(counts - exact)] -= 1
    return np.concatenate([scored[labels == c][:count] for c, count in zip(classes, counts)])


def kfold(y: np.ndarray, *, k: int = 10, seed: int = 0, stratify: bool = False) -> list[Fold]:
    """K-fold cross-validation (default k = 10); stratified keeps each fold's class shares."""
    from sklearn.model_selection import KFold, StratifiedKFold  # imported on use: slow

    n = len(y)
    if not 2 <= k <= n:
        raise ValueError(f"k-fold: expected 2 <= k <= {n} (the number of rows), got k = {k}")
    if stratify:
        counts = np.bincount(y) if y.dtype.kind in "iu" else np.unique(y, return_counts=True)[1]
        if counts.min() < k:
            raise ValueError(
                f"stratified k-fold: every class needs at least k = {k} rows, the smallest has {counts.min()}"
            )
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = [(tr, te) for tr, te in splitter.split(np.zeros(n), y)]
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        folds = [(tr, te) for tr, te in splitter.split(np.zeros(n))]
    return _balanced(folds, n, y if stratify else None)


def repeated(
    y: np.ndarray, *, splits: int = 10, val: float = 0.3, seed: int = 0, stratify: bool = False, replace: bool = False
) -> list[Fold]:
    """Monte-Carlo cross-validation: `splits` random splits with a share `val` scored.

    With `replace`, each split is a bootstrap sample of N rows (with repeats) scored out of bag.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit  # imported on use: slow

    n = len(y)
    if splits < 1:
        raise ValueError(f"repeated splits: expected at least 1 split, got {splits}")
    if replace:
        rng = np.random.default_rng(seed)
        folds = []
        for _ in range(splits):
            train = np.sort(rng.integers(0, n, size=n))
            scored = np.setdiff1d(np.arange(n), train)
            folds.append((train, scored))
        return folds
    if not 0.0 < val < 1.0:
        raise ValueError(f"repeated splits: expected a scored share 0 < val < 1, got {val}")
    cls = StratifiedShuffleSplit if stratify else ShuffleSplit
    splitter = cls(n_splits=splits, test_size=val, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(n), y if stratify else None)]


def leave_p_out(y: np.ndarray, *, p: int = 1, max_splits: int = MAX_SPLITS) -> list[Fold]:
    """Every subset of p rows scored once: C(N, p) splits (leave-one-out: p = 1, N splits)."""
    from sklearn.model_selection import LeavePOut  # imported on use: slow

    n = len(y)
    if not 1 <= p < n:
        raise ValueError(f"leave-p-out: expected 1 <= p < {n}, got p = {p}")
    count = math.comb(n, p)
    if count > max_splits:
        raise ValueError(
            f"leave-{p}-out on {n} rows needs C({n}, {p}) = {count:,} models, more than the limit of {max_splits:,}; "
            f"use repeated random splits (--scheme repeated) or raise the limit (--max-splits)"
        )
    return [(tr, te) for tr, te in LeavePOut(p).split(np.zeros(n))]


def holdout(y: np.ndarray, *, val: float = 0.3, seed: int = 0, stratify: bool = False) -> list[Fold]:
    """One random split with a share `val` scored."""
    return repeated(y, splits=1, val=val, seed=seed, stratify=stratify)


SCHEMES = {
    "kfold": lambda y, o: kfold(y, k=o["folds"], seed=o["seed"]),
    "stratified": lambda y, o: kfold(y, k=o["folds"], seed=o["seed"], stratify=True),
    "repeated": lambda y, o: repeated(y, splits=o["folds"], val=o["val"], seed=o["seed"], stratify=o["stratify"]),
    "bootstrap": lambda y, o: repeated(y, splits=o["folds"], seed=o["seed"], replace=True),
    "lpo": lambda y, o: leave_p_out(y, p=o["p"], max_splits=o["max_splits"]),
    "loo": lambda y, o: leave_p_out(y, p=1, max_splits=o["max_splits"]),
    "holdout": lambda y, o: holdout(y, val=o["val"], seed=o["seed"], stratify=o["stratify"]),
    "logo": lambda y, o: _needs_groups("logo"),
}
"""Scheme name -> folds(y, options with folds, seed, val, stratify, p, max_splits)."""


def _needs_groups(scheme: str) -> list[Fold]:
    raise ValueError(f"validation scheme '{scheme}' (leave one group out) needs data.groups; none is set")


def make_folds(
    scheme: str,
    y: np.ndarray,
    *,
    folds: int = 10,
    seed: int = 0,
    val: float = 0.3,
    stratify: bool = False,
    p: int = 2,
    max_splits: int = MAX_SPLITS,
    groups: np.ndarray | None = None,
) -> list[Fold]:
    """The folds of a named scheme over the rows of `y`; with `groups`, each group wholly on one side
    (`tamenet.data.groups.group_folds`)."""
    if groups is not None:
        from ..data.groups import group_folds

        return group_folds(scheme, np.asarray(y), groups, folds=folds, seed=seed, val=val)
    options = {"folds": folds, "seed": seed, "val": val, "stratify": stratify, "p": p, "max_splits": max_splits}
    return lookup(SCHEMES, scheme, "validation scheme")(np.asarray(y), options)
