"""Learning curves as a PNG: loss and one metric, train dashed and val solid, one colour per member.

Drawn with matplotlib's Agg canvas on a bare `Figure` (no pyplot, no display, no global figure
registry), then written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tamenet.track.atomic import atomic_write_bytes

if TYPE_CHECKING:  # matplotlib is imported in the functions that draw: slow, and not needed to train or predict
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["plot_curves"]

MAX_LABELLED_MEMBERS = 10
"""Members beyond this many are drawn but left out of the legend."""


def _as_float(value: Any) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _member_series(rows: list[dict]) -> dict[int, dict[str, list[float]]]:
    """Rows grouped by member (``member`` key, else 0), sorted by epoch: {member: {column: values}}."""
    grouped: dict[int, list[dict]] = {}
    for row in rows:
        grouped.setdefault(int(row.get("member", 0) or 0), []).append(row)
    series: dict[int, dict[str, list[float]]] = {}
    for member in sorted(grouped):
        member_rows = sorted(grouped[member], key=lambda r: _as_float(r["epoch"]))
        columns = {key for row in member_rows for key in row}
        series[member] = {key: [_as_float(row.get(key)) for row in member_rows] for key in columns}
    return series


def _colour(index: int, count: int) -> Any:
    from matplotlib import colormaps

    if count <= 10:
        return colormaps["tab10"](index % 10)
    return colormaps["viridis"](index / max(count - 1, 1))


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _draw_panel(
    axes: Axes,
    series: dict[int, dict[str, list[float]]],
    *,
    train_key: str,
    val_key: str,
    best_epochs: list[int | None] | None,
    shade_gap: bool,
) -> list[tuple[Line2D, str]]:
    """Draw one panel; return (line, "member m") for the members to name in the figure legend."""
    count = len(series)
    named: list[tuple[Line2D, str]] = []
    for index, (member, columns) in enumerate(series.items()):
        colour = _colour(index, count)
        epochs = columns["epoch"]
        lines = []
        if train_key in columns:
            lines += axes.plot(epochs, columns[train_key], linestyle="--", color=colour, linewidth=1.2, alpha=0.9)
        if val_key in columns:
            lines += axes.plot(epochs, columns[val_key], linestyle="-", color=colour, linewidth=1.6)
        if lines and index < MAX_LABELLED_MEMBERS:
            named.append((lines[-1], f"member {member}"))
        if shade_gap and index == 0 and train_key in columns and val_key in columns:
            train, val = columns[train_key], columns[val_key]
            both = [math.isfinite(t) and math.isfinite(v) for t, v in zip(train, val)]
            axes.fill_between(epochs, train, val, where=both, color=colour, alpha=0.12, linewidth=0,
                              label="gap (member 0)" if count > 1 else "generalization gap")
        best = best_epochs[index] if best_epochs is not None else None
        if best is not None:
            axes.axvline(best, color=colour, linestyle=":", linewidth=1.0, alpha=0.8)
            if val_key in columns and best in epochs:
                value = columns[val_key][epochs.index(best)]
                if math.isfinite(value):
                    axes.plot([best], [value], marker="o", markersize=5, color=colour, zorder=5)
    return named


def _style_legend(axes: Axes, *, has_best: bool) -> None:
    """Panel legend for line styles (train dashed, val solid, best epoch dotted) and the gap shading. The training
    curve is what the epoch's steps measured, with dropout and noise on, so it can lie above the validation curve."""
    from matplotlib.lines import Line2D

    grey = "0.3"
    handles: list[Any] = [Line2D([], [], color=grey, linestyle="--"), Line2D([], [], color=grey, linestyle="-")]
    labels = ["train (as trained: dropout, noise on)", "validation (evaluated: no dropout)"]
    extra_handles, extra_labels = axes.get_legend_handles_labels()
    handles += extra_handles
    labels += extra_labels
    if has_best:
        handles.append(Line2D([], [], color=grey, linestyle=":", marker="o", markersize=4))
        labels.append("best epoch")
    axes.legend(handles, labels, fontsize=8, loc="best", framealpha=0.8)


def plot_curves(
    rows: list[dict],
    path: Path | str,
    *,
    metric: str,
    best_epochs: list[int] | None = None,
    title: str = "",
) -> None:
    """Draw loss and `metric` curves from metrics rows and write them to `path` (PNG) atomically.

    `rows` are metrics.csv rows (``epoch``, optional ``member``, ``train_loss``, ``val_loss``,
    ``train_<metric>``, ``val_<metric>``); `best_epochs` gives one epoch per member (members in
    ascending order), marked with a dotted line and a dot on the val curve.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported on use: slow
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if not isinstance(rows, (list, tuple)) or not rows or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"rows: expected a non-empty list of dicts (metrics rows), received {rows!r:.80}")
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"metric: expected a metric name such as 'accuracy' or 'rmse', received {metric!r}")
    if any("epoch" not in row for row in rows):
        raise ValueError("rows: expected an 'epoch' key in every row")
    columns = {key for row in rows for key in row}
    train_metric, val_metric = f"train_{metric}", f"val_{metric}"
    if train_metric not in columns and val_metric not in columns:
        raise ValueError(f"metric: expected a column {val_metric!r} or {train_metric!r}, "
                         f"received columns {sorted(columns)}")
    series = _member_series(list(rows))
    if best_epochs is not None:
        if not isinstance(best_epochs, (list, tuple)):
            raise TypeError(f"best_epochs: expected a list (one epoch per member), received {type(best_epochs).__name__}")
        if len(best_epochs) != len(series):
            raise ValueError(f"best_epochs: expected {len(series)} epochs (one per member), received {len(best_epochs)}")
    has_best = best_epochs is not None and any(epoch is not None for epoch in best_epochs)

    figure = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)

    named = _draw_panel(loss_axes, series, train_key="train_loss", val_key="val_loss",
                        best_epochs=best_epochs, shade_gap=True)
    losses = [v for member in series.values() for key in ("train_loss", "val_loss") for v in _finite(member.get(key, []))]
    if losses and all(v > 0 for v in losses):
        loss_axes.set_yscale("log")
    loss_axes.set_title("loss")
    loss_axes.set_ylabel("loss" + (" (log scale)" if loss_axes.get_yscale() == "log" else ""))
    if not losses:
        loss_axes.text(0.5, 0.5, "no train_loss / val_loss column", ha="center", va="center",
                       transform=loss_axes.transAxes, color="0.4")

    named_metric = _draw_panel(metric_axes, series, train_key=train_metric, val_key=val_metric,
                               best_epochs=best_epochs, shade_gap=False)
    metric_axes.set_title(metric)
    metric_axes.set_ylabel(metric)

    for axes in (loss_axes, metric_axes):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, which="major", alpha=0.3)
        _style_legend(axes, has_best=has_best)
    if title:
        figure.suptitle(str(title))
    figure.tight_layout()
    if len(series) > 1:  # one legend naming the members (same colour in both panels), right of the panels
        handles, labels = map(list, zip(*(named or named_metric)))
        hidden = len(series) - len(labels)
        if hidden > 0:
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(f"+ {hidden} more")
        figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)

    save_figure(figure, path)


def save_figure(figure: Figure, path: Path | str) -> None:
    """Render a figure to PNG in memory, write it atomically and free it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    figure.clear()
    atomic_write_bytes(Path(path), buffer.getvalue())
