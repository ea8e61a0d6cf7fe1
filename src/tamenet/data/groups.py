"""Group-aware splits (B1, B2 with ``data.groups``): every row of a group lands in one part only.

A group is what must not be split across training and judging: a speaker, a patient, the source of a review.
The holdout draws whole groups with scikit-learn's ``GroupShuffleSplit`` (test first, then validation from the
rest); cross-validation uses ``GroupKFold``, ``StratifiedGroupKFold``, ``LeaveOneGroupOut`` or
``GroupShuffleSplit`` (`group_folds`). The folds train side by side as one population, so every fold must fit
the same number of rows: each fold's training rows are cut (at random, seeded) to the smallest fold's count;
the rows cut neither train nor are scored in that fold, so no row of a scored group ever trains.
"""

from __future__ import annotations

import numpy as np

GROUP_SCHEMES = ("kfold", "stratified", "logo", "holdout", "repeated")
"""The validation schemes that keep groups whole (``logo``: leave one group out)."""


def _check_groups(groups: np.ndarray, need: int, what: str) -> np.ndarray:
    groups = np.asarray(groups)
    distinct = len(np.unique(groups))
    if distinct < need:
        raise ValueError(f"{what}: needs at least {need} distinct groups (data.groups), got {distinct}")
    return groups


def _draw(rows: np.ndarray, groups: np.ndarray, share: float, seed: int, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, drawn rows): whole groups holding about `share` of `rows`."""
    from sklearn.model_selection import GroupShuffleSplit  # imported on use: slow

    _check_groups(groups[rows], 2, f"the {part} split")
    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    keep, drawn = next(splitter.split(rows, groups=groups[rows]))
    if len(keep) == 0 or len(drawn) == 0:
        raise ValueError(f"the {part} split by groups would be empty: share {share} of {len(rows)} rows")
    return rows[keep], rows[drawn]


def group_split_indices(groups: np.ndarray, *, val: float, test: float, seed: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, val, test) row indices with whole groups in each part; shares count groups
    (``GroupShuffleSplit``: round(share * groups) of the groups, at least one), 0 leaves a part empty."""
    groups = np.asarray(groups)
    rows = np.arange(len(groups), dtype=np.int64)
    if test > 0:
        rows, test_rows = _draw(rows, groups, test, seed, "test")
    else:
        test_rows = rows[:0]
    if val > 0:
        rows, val_rows = _draw(rows, groups, val, seed, "validation")
    else:
        val_rows = rows[:0]
    return np.sort(rows), np.sort(val_rows), np.sort(test_rows)


def _equal_training(folds: list[tuple[np.ndarray, np.ndarray]], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    size = min(len(train) for train, _ in folds)
    rng = np.random.default_rng(seed)
    return [(np.sort(rng.choice(train, size=size, replace=False)) if len(train) > size else np.sort(train),
             np.sort(scored)) for train, scored in folds]


def group_folds(scheme: str, y: np.ndarray, groups: np.ndarray, *, folds: int = 5, seed: int = 0, val: float = 0.3
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, scored rows) per fold, each group wholly on one side; training sets of one size."""
    from sklearn import model_selection as ms  # imported on use: slow

    groups = np.asarray(groups)
    n = len(groups)
    if len(y) != n:
        raise ValueError(f"data.groups: expected one group per row ({len(y)}), got {n}")
    X = np.zeros(n)
    if scheme == "kfold":
        splitter = ms.GroupKFold(n_splits=folds)
        _check_groups(groups, folds, f"group k-fold with k = {folds}")
        pairs = splitter.split(X, y, groups)
    elif scheme == "stratified":
        _check_groups(groups, folds, f"stratified group k-fold with k = {folds}")
        pairs = ms.StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, y, groups)
    elif scheme == "logo":
        _check_groups(groups, 2, "leave-one-group-out")
        pairs = ms.LeaveOneGroupOut().split(X, y, groups)
    elif scheme in ("holdout", "repeated"):
        _check_groups(groups, 2, f"group {scheme}")
        splits = 1 if scheme == "holdout" else folds
        pairs = ms.GroupShuffleSplit(n_splits=splits, test_size=val, random_state=seed).split(X, y, groups)
    else:
        raise ValueError(f"validation scheme '{scheme}' cannot keep groups whole (data.groups is set); "
                         f"valid with groups: {', '.join(GROUP_SCHEMES)}")
    return _equal_training([(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in pairs], seed)
