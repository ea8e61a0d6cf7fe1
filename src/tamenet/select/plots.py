"""Pictures of model selection: per-fold scores, and the regularization path (score against lambda)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..track import save_figure
from .search import best_index

MAX_LABELLED = 30


def plot_cv(result: dict[str, Any], path: Path) -> None:
    """Each candidate's scored metric per fold (dots) with its mean +- standard deviation (bar)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported on use: slow
    from matplotlib.figure import Figure

    metric, rows = result["metric"], result["candidates"]
    figure = Figure(figsize=(max(5.0, 0.5 * len(rows) + 3), 4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for c, row in enumerate(rows):
        folds = row[f"cv_{metric}_folds"]
        axes.scatter([c] * len(folds), folds, s=12, alpha=0.5, color="tab:blue",
                     label="each fold's held-out rows" if c == 0 else None)
        axes.errorbar([c], [row[f"cv_{metric}_mean"]], yerr=[row[f"cv_{metric}_std"]], fmt="o", color="black",
                      capsize=4, label="mean over folds +- standard deviation" if c == 0 else None)
        axes.scatter([c], [row[f"train_{metric}_mean"]], marker="x", color="tab:orange",
                     label="training rows (mean over folds)" if c == 0 else None)
    labels = [_label(row) for row in rows]
    axes.set_xticks(range(len(rows)), labels if len(rows) <= MAX_LABELLED else None, rotation=45, ha="right")
    axes.set_ylabel(f"{metric}")
    scheme = SCHEME_WORDS.get(result["scheme"], result["scheme"]).format(k=result["folds"])
    axes.set_title(f"{result['dataset']}: {scheme}")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    save_figure(figure, path)


SCHEME_WORDS = {
    "kfold": "{k}-fold cross-validation", "stratified": "stratified {k}-fold cross-validation",
    "repeated": "{k} repeated random splits", "bootstrap": "{k} bootstrap samples (scored out of bag)",
    "lpo": "leave-p-out ({k} splits)", "loo": "leave-one-out ({k} splits)", "holdout": "one held-out split",
}
"""A validation scheme in words for the figure's title ({k}: the number of folds or splits)."""

KEY_WORDS = {
    "penalty.l2": "L2 strength", "penalty.l1": "L1 strength", "penalty.soft_sharing": "soft sharing",
    "model.dropout": "dropout", "model.widths": "widths", "model.input_features": "inputs kept",
    "model.dropconnect": "DropConnect", "model.hidden_noise": "hidden noise", "model.weight_noise": "weight noise",
    "train.lr": "learning rate", "train.momentum": "momentum", "train.weight_decay": "weight decay",
    "train.input_noise": "input noise", "train.clip.max": "clipping threshold", "constraints.max_norm": "max-norm c",
}
"""Recipe keys in words for the candidates' labels; any other key is shown by its last part, with spaces."""


def key_words(key: str) -> str:
    return KEY_WORDS.get(key, key.rsplit(".", 1)[-1].replace("_", " "))


def _label(row: dict[str, Any]) -> str:
    keys = [k for k in row if k not in {"candidate", "population"} and not k.startswith(("cv_", "train_"))
            and k not in {"best_epochs", "diverged_folds"}]
    return ", ".join(f"{key_words(k)} {row[k]:.3g}" if isinstance(row[k], float) else f"{key_words(k)} {row[k]}"
                     for k in keys) or "the recipe as it is"


def plot_path(rows: list[dict[str, Any]], key: str, metric: str, path: Path) -> None:
    """Train and cross-validated scores against one numeric hyper-parameter (log axis when it spans decades)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported on use: slow
    from matplotlib.figure import Figure

    values = np.array([row[key] for row in rows], dtype=float)
    order = np.argsort(values)
    values = values[order]
    positive = values[values > 0]
    log = len(positive) > 0 and positive.max() / positive.min() >= 100
    x = values.copy()
    if log and (values <= 0).any():  # zero has no place on a log axis: draw it one decade below the smallest
        x[values <= 0] = positive.min() / 10
    figure = Figure(figsize=(6.5, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for prefix, colour, label in (("train", "tab:orange", "train"), ("cv", "tab:blue", "cross-validated")):
        mean = np.array([rows[i][f"{prefix}_{metric}_mean"] for i in order])
        std = np.array([rows[i][f"{prefix}_{metric}_std"] for i in order])
        axes.plot(x, mean, marker="o", color=colour, label=label)
        axes.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
    failed = [j for j, i in enumerate(order) if not np.isfinite(rows[i][f"cv_{metric}_mean"])]
    if failed:  # diverged candidates have no score: marked on the axis, not left out silently
        axes.plot(x[failed], np.full(len(failed), axes.get_ylim()[0]), linestyle="none", marker="x", color="tab:red",
                  markersize=9, clip_on=False, label="diverged (no score)")
    if len(failed) < len(rows):  # no best line when every candidate failed
        best = list(order).index(best_index(rows, metric))
        axes.axvline(x[best], color="black", linestyle=":", label=f"best {key} = {values[best]:.3g}")
    if log:
        axes.set_xscale("log")
    axes.set_xlabel(key + (" (0 drawn a decade below the smallest)" if log and (values <= 0).any() else ""))
    axes.set_ylabel(metric)
    axes.set_title(f"regularization path: {metric} against {key}")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    save_figure(figure, path)


__all__ = ["plot_cv", "plot_path"]
