"""Restricting the inputs (C6): each member sees only its k best inputs, ranked on its own training rows.

The lectures list fewer inputs beside fewer layers, units and connections as a way to restrict a
network. `model.input_features: k` (a number per member, so a grid over k is one population)
keeps the k inputs with the highest univariate F statistic on the member's training rows:
scikit-learn's `f_classif` (ANOVA F between the classes) or `f_regression` (the squared
correlation with the target, as an F statistic). Ties, and inputs without a statistic (constant on
those rows), are ordered by column; constant inputs come last. Ranking on the training rows only
keeps the choice from seeing the rows a fold scores or the validation split: cross-validation ranks
each fold on that fold's training rows, exactly as `SelectKBest` inside a scikit-learn pipeline.
The mask lives in the model (`Population.input_mask`), so prediction and a reloaded `model.pt`
see the same inputs.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import RecipeError

if TYPE_CHECKING:  # the loop imports this module: no import of the train package at run time
    from .models import Population
    from .train.member_data import MemberData

SCORES = {"classification": "f_classif", "regression": "f_regression"}
"""Task -> the univariate score (a function of `sklearn.feature_selection`) that ranks the inputs (higher is better)."""


def input_ranking(X: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Column indices of X [N, F], best first, by the task's F statistic on these rows."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Features [...] are constant": ranked last below
        from sklearn import feature_selection  # imported here: slow, and only needed with input_features

        scores, _ = getattr(feature_selection, SCORES[task])(X, y)
    scores = np.where(np.isfinite(scores), scores, -np.inf)  # constant inputs: no statistic, ranked last
    return np.argsort(-scores, kind="stable")


def check_counts(ks: list[float], n_in: int) -> list[int]:
    """The per-member k of `model.input_features` as integers in [0, n_in] (0: every input)."""
    out = []
    for k in ks:
        if float(k) != int(k) or not 0 <= int(k) <= n_in:
            raise RecipeError(
                f"model.input_features: expected whole numbers from 1 to {n_in} (the data's inputs), or 0 for "
                f"all of them, got {k:g}"
            )
        out.append(int(k))
    return out


def input_masks(data: MemberData, ks: list[int]) -> torch.Tensor:
    """[M, F] masks: member m keeps the ks[m] best inputs of its own training rows (0: all)."""
    n_in = data.X.shape[-1]
    masks = torch.ones(data.members, n_in)
    rankings: dict[tuple[int, bytes], np.ndarray] = {}  # (copy, training rows): one ranking for members sharing them
    for m, k in enumerate(ks):
        if k == 0:
            continue
        copy, rows = int(data.fold[m]), data.train[m if data.train.shape[0] > 1 else 0].numpy()
        key = (copy, rows.tobytes())
        if key not in rankings:
            rankings[key] = input_ranking(data.X[copy].numpy()[rows], data.y[copy].numpy()[rows], data.task)
        masks[m] = 0.0
        masks[m, torch.from_numpy(rankings[key][:k].copy())] = 1.0
    return masks


def select_inputs_(model: Population, data: MemberData, ks: list[float]) -> None:
    """Fill the model's input mask from each member's training rows (see the module's docstring)."""
    if "input_mask" not in model._buffers:
        raise RecipeError("model.input_features: needs one of tamenet's model kinds (mlp, cnn, resnet), "
                          f"got a {type(model).__name__}")
    counts = check_counts(ks, data.X.shape[-1])
    with torch.no_grad():
        model.input_mask.copy_(input_masks(data, counts))
