"""The report's figures, drawn with matplotlib's Agg canvas and returned as base64 PNG text for an <img>.

Every function takes plain lists / arrays and returns the `data:` URI's payload; nothing is written to disk.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

DPI = 90
TRAIN, VAL, GAP = "tab:orange", "tab:blue", "tab:red"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported on use: slow
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)  # fixed margins: a layout engine would draw twice
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.17, top=0.84, wspace=0.35, hspace=0.6)
    FigureCanvasAgg(figure)
    return figure


def to_png(figure) -> str:
    """The figure as base64-encoded PNG text."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _clean(values: list[float]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)


def member_curves(epochs: list[int], series: dict[str, list[float]], metric: str, *, title: str,
                  best_epoch: int | None, onset: int | None) -> str:
    """Loss (gap between train and val shaded) and metric per epoch of one member; best epoch and onset marked."""
    figure = _figure(5.6, 2.5)
    x = np.asarray(epochs, dtype=float)
    for col, (quantity, axes) in enumerate((("loss", figure.add_subplot(1, 2, 1)), (metric, figure.add_subplot(1, 2, 2)))):
        train, val = _clean(series.get(f"train_{quantity}", [])), _clean(series.get(f"val_{quantity}", []))
        if len(train) == len(x):
            axes.plot(x, train, color=TRAIN, linestyle="--", label="train")
        if len(val) == len(x):
            axes.plot(x, val, color=VAL, label="val")
            if quantity == "loss" and len(train) == len(x):
                axes.fill_between(x, train, val, where=val >= train, color=GAP, alpha=0.15, label="gap",
                                  interpolate=True)
        if best_epoch is not None:
            axes.axvline(best_epoch, color="black", linestyle=":", linewidth=1, label=f"best {best_epoch}")
        if onset is not None:
            axes.axvline(onset, color=GAP, linewidth=1.2, label=f"overfits from {onset}")
        if quantity == "loss" and len(train) and np.nanmin(np.r_[train, val]) > 0:
            finite = np.r_[train, val][np.isfinite(np.r_[train, val])]
            if len(finite) and finite.max() / finite.min() > 30:
                axes.set_yscale("log")
        axes.set_xlabel("epoch")
        axes.set_ylabel(quantity)
        axes.grid(alpha=0.3)
        if col == 0:
            axes.legend(fontsize=6, loc="upper right")
    figure.suptitle(title, fontsize=9)
    return to_png(figure)


def weight_histograms(layers: list[tuple[str, np.ndarray]], *, title: str) -> str:
    """One histogram per layer of one member's nonzero weights; exact zeros counted apart and marked (L1 makes them)."""
    count = len(layers)
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = _figure(2.4 * columns + 0.6, 2.0 * rows + 0.4)
    for i, (name, w) in enumerate(layers):
        axes = figure.add_subplot(rows, columns, i + 1)
        w = np.asarray(w, dtype=float).ravel()
        nonzero = w[w != 0]
        zeros = int((w == 0).sum())
        if len(nonzero):  # drawn as one step line: far cheaper than 60 bar patches
            counts, edges = np.histogram(nonzero, bins=60)
            axes.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.8)
        axes.set_title(f"{name}\n{zeros / max(len(w), 1):.1%} exact zeros", fontsize=7)
        axes.tick_params(labelsize=6)
        if zeros:
            axes.axvline(0.0, color=GAP, linewidth=2, alpha=0.7)
    figure.suptitle(title, fontsize=9)
    return to_png(figure)


def weight_norms(rows: list[dict], *, members: list[int], title: str) -> str:
    """Per-layer weight norm over epochs (left) and the share of exact zeros (right), one colour per layer."""
    from matplotlib import colormaps

    figure = _figure(6.4, 2.6)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    layers = sorted({(r["layer"], r["name"]) for r in rows})
    colours = colormaps["tab10"]
    for i, (layer, name) in enumerate(layers):
        for j, m in enumerate(members):
            mine = sorted((r for r in rows if r["member"] == m and r["name"] == name), key=lambda r: r["epoch"])
            x = [r["epoch"] for r in mine]
            label = name if j == 0 else None
            style = "-" if j == 0 else ":"
            left.plot(x, [r["norm"] for r in mine], color=colours(i % 10), linestyle=style, label=label)
            right.plot(x, [r["zero_share"] for r in mine], color=colours(i % 10), linestyle=style)
    left.set_ylabel("||W||_2")
    right.set_ylabel("share of exact zeros")
    for axes in (left, right):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    left.legend(fontsize=6)
    figure.suptitle(title, fontsize=9)
    return to_png(figure)


def regularization_path(rows: list[dict[str, Any]], key: str, metric: str, best: int) -> str:
    """Train and cross-validated score against one numeric key (log axis over decades), fold spread shaded,
    every fold's score as a dot, the chosen value marked."""
    figure = _figure(6.4, 3.4)
    axes = figure.add_subplot(1, 1, 1)
    values = np.array([float(r[key]) for r in rows])
    order = np.argsort(values)
    positive = values[values > 0]
    log = len(positive) > 0 and positive.max() / positive.min() >= 100
    x = values.copy()
    if log and (values <= 0).any():
        x[values <= 0] = positive.min() / 10
    for prefix, colour, label in (("train", TRAIN, "train"), ("cv", VAL, "cross-validated")):
        mean = np.array([rows[i][f"{prefix}_{metric}_mean"] for i in order], dtype=float)
        std = np.array([rows[i][f"{prefix}_{metric}_std"] for i in order], dtype=float)
        axes.plot(x[order], mean, marker="o", color=colour, label=label)
        axes.fill_between(x[order], mean - std, mean + std, color=colour, alpha=0.2)
    for i in order:
        folds = rows[i].get(f"cv_{metric}_folds") or []
        axes.scatter([x[i]] * len(folds), folds, s=6, color=VAL, alpha=0.4)
    axes.axvline(x[best], color="black", linestyle=":", label=f"chosen {key} = {values[best]:.3g}")
    if log:
        axes.set_xscale("log")
    axes.set_xlabel(key + (" (0 drawn a decade below the smallest)" if log and (values <= 0).any() else ""))
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7)
    return to_png(figure)


def halving_timeline(rows: list[dict[str, Any]], label: Any, epochs: int) -> str:
    """Epochs each candidate trained before successive halving dropped it (full bars: kept to the end)."""
    height = 0.25 * len(rows) + 1.0
    figure = _figure(7.0, height)
    figure.subplots_adjust(left=0.3, right=0.97, bottom=0.5 / height, top=1 - 0.15 / height)
    axes = figure.add_subplot(1, 1, 1)
    trained = [r.get("dropped_at_epoch") or r.get("epochs_trained") or epochs for r in rows]
    colours = [GAP if r.get("dropped_at_epoch") else "tab:green" for r in rows]
    axes.barh(range(len(rows)), trained, color=colours)
    axes.set_yticks(range(len(rows)), [label(r) for r in rows], fontsize=6)
    axes.invert_yaxis()
    axes.set_xlabel("epochs trained (red: dropped at that rung)")
    axes.grid(alpha=0.3, axis="x")
    return to_png(figure)


def reliability_diagram(table: dict[str, Any], *, title: str) -> str:
    """Accuracy against confidence per bin (bars) beside the diagonal of perfect calibration."""
    figure = _figure(3.4, 3.2)
    axes = figure.add_subplot(1, 1, 1)
    edges = table["edges"]
    centres = (edges[:-1] + edges[1:]) / 2
    shown = table["count"] > 0
    axes.bar(centres[shown], table["accuracy"][shown], width=edges[1] - edges[0], color=VAL, alpha=0.7,
             edgecolor="black", label="accuracy")
    axes.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="calibrated")
    axes.set_xlabel("confidence (max probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{title}\nECE {table['ece']:.4f}", fontsize=8)
    axes.legend(fontsize=7, loc="upper left")
    return to_png(figure)


def entropy_vs_error(h: np.ndarray, wrong: np.ndarray, *, title: str) -> str:
    """Histograms of predictive entropy for the right and the wrong answers (density)."""
    figure = _figure(3.6, 3.2)
    axes = figure.add_subplot(1, 1, 1)
    bins = np.linspace(0, max(float(h.max()), 1e-6), 25)
    axes.hist(h[~wrong], bins=bins, density=True, alpha=0.6, color="tab:green", label=f"right ({(~wrong).sum()})")
    if wrong.any():
        axes.hist(h[wrong], bins=bins, density=True, alpha=0.6, color=GAP, label=f"wrong ({wrong.sum()})")
    axes.set_xlabel("predictive entropy (nats)")
    axes.set_ylabel("density")
    axes.set_title(title, fontsize=8)
    axes.legend(fontsize=7)
    return to_png(figure)


__all__ = ["entropy_vs_error", "halving_timeline", "member_curves", "regularization_path", "reliability_diagram",
           "to_png", "weight_histograms", "weight_norms"]
