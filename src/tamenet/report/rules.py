"""Diagnosis rules: pure functions over one member's history, each stated in words the report prints.

A history is the member's per-epoch train and validation losses (and metric). The rules:

* **overfitting onset** (`overfit_onset`): the first epoch e after which the smoothed validation loss
  rises: every one of the next `patience` smoothed values lies above the value at e, the last by more
  than `rise` times |value at e|, while the smoothed
  training loss at e + patience is below its value at e (training keeps falling). Smoothing is a
  centred moving average over `window` epochs (fewer at the ends).
* **large and growing gap** (`gap_finding`): at the last epoch the relative loss gap
  (val - train) / val is at least `gap_large` and larger than at the best epoch (it grew).
* **high training loss** (`underfit_finding`): classification whose last training accuracy is below
  `underfit_accuracy`, or regression whose last training loss is above `underfit_loss_share` of the
  first epoch's, with a small gap (relative gap below `gap_large`): the model cannot fit its own data.
* **divergence** (`diverged_finding`): the run marked the member diverged (NaN / infinite loss), or its
  training loss ended above `diverge_factor` times its minimum.
* **best value at the grid's edge** (`edge_finding`): in a search over one numeric key, the best
  candidate holds the smallest or the largest value tried.

Each finding carries suggestions with the values to search, written as `--grid` arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

RULES: dict[str, float] = {
    "window": 3,  # epochs of the centred moving average
    "patience": 5,  # epochs the validation loss must stay above the onset value
    "rise": 0.01,  # the last of them by this share of |value at the onset|
    "gap_large": 0.25,  # relative loss gap (val - train) / val
    "underfit_accuracy": 0.9,  # last training accuracy below this: high training loss
    "underfit_loss_share": 0.5,  # regression: last training loss above this share of the first
    "diverge_factor": 10.0,  # last training loss above this many times its minimum: diverging
}
"""Thresholds of the rules (the report prints them next to the findings)."""


@dataclass
class Finding:
    """One diagnosis: which rule fired, for whom, the evidence in words and what to try next."""

    rule: str
    who: str
    evidence: str
    suggestions: list[str] = field(default_factory=list)


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average over `window` values (fewer at the ends); non-finite values are skipped."""
    half = int(window) // 2
    out = []
    for i in range(len(values)):
        part = _finite(values[max(0, i - half): i + half + 1])
        out.append(sum(part) / len(part) if part else math.nan)
    return out


def overfit_onset(train_loss: list[float], val_loss: list[float], epochs: list[int] | None = None, *,
                  window: int = int(RULES["window"]), patience: int = int(RULES["patience"]),
                  rise: float = RULES["rise"]) -> int | None:
    """The epoch where overfitting starts by the rule in the module docstring, or None if it never does."""
    if len(train_loss) != len(val_loss):
        raise ValueError(f"overfit_onset: expected equal lengths, got {len(train_loss)} train and {len(val_loss)} val")
    epochs = list(epochs) if epochs is not None else list(range(1, len(val_loss) + 1))
    sv, st = smooth(val_loss, window), smooth(train_loss, window)
    for e in range(len(sv) - patience):
        base = sv[e]
        ahead = sv[e + 1: e + patience + 1]
        if not math.isfinite(base) or not all(math.isfinite(v) for v in ahead):
            continue
        if all(v > base for v in ahead) and ahead[-1] - base > rise * abs(base) and st[e + patience] < st[e]:
            return epochs[e]
    return None


def relative_gap(train_loss: float, val_loss: float) -> float:
    """(val - train) / |val|: the share of the validation loss the training loss does not pay."""
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)) or val_loss == 0:
        return math.nan
    return (val_loss - train_loss) / abs(val_loss)


def _grid(key: str, values: list[float]) -> str:
    return f"--grid {key}=" + ",".join(f"{v:.3g}" for v in values)


def stronger(value: float, floor: float) -> list[float]:
    """Three stronger penalties: x3, x10, x30 of the current one, or floor x1, x10, x100 when it is 0."""
    return [value * f for f in (3, 10, 30)] if value > 0 else [floor, floor * 10, floor * 100]


def weaker(value: float) -> list[float]:
    """Three weaker penalties: /3, /10 and 0."""
    return [value / 3, value / 10, 0.0] if value > 0 else []


def gap_finding(who: str, train_loss: list[float], val_loss: list[float], best: int, current: dict[str, float], *,
                gap_large: float = RULES["gap_large"]) -> Finding | None:
    """Large and growing gap -> a stronger penalty, dropout, input noise (augmentation) or earlier stopping.

    `best` is the index of the best epoch; `current` holds the recipe's l2, dropout, input_noise and patience.
    """
    if not train_loss or not val_loss:
        return None
    last = relative_gap(train_loss[-1], val_loss[-1])
    at_best = relative_gap(train_loss[best], val_loss[best])
    if not (math.isfinite(last) and last >= gap_large and last > at_best):
        return None
    l2, dropout, noise = current.get("l2", 0.0), current.get("dropout", 0.0), current.get("input_noise", 0.0)
    patience = current.get("patience")
    drops = [p for p in (dropout + 0.1, dropout + 0.2, dropout + 0.3) if p <= 0.8] or [0.5]
    suggestions = [
        "a stronger L2 penalty: " + _grid("penalty.l2", stronger(l2, 1e-4)),
        "more dropout: " + _grid("model.dropout", [round(p, 2) for p in drops]),
        "input noise (augmentation): " + _grid("train.input_noise", [0.05, 0.1, 0.2] if noise == 0 else
                                               [noise * 2, noise * 4]),
        "earlier stopping: " + ("--set train.early_stopping.patience=10 (none is set now)" if patience is None else
                                _grid("train.early_stopping.patience", sorted({max(1, int(patience) // 2),
                                                                               max(1, int(patience) // 4)}))),
    ]
    evidence = (f"relative loss gap (val - train) / val = {last:.2f} at the last epoch, {at_best:.2f} at the best "
                f"epoch (rule: >= {gap_large:g} and growing)")
    return Finding("large and growing gap", who, evidence, suggestions)


def underfit_finding(who: str, task: str, train_loss: list[float], val_loss: list[float],
                     train_metric: list[float], current: dict[str, Any], *,
                     accuracy: float = RULES["underfit_accuracy"], share: float = RULES["underfit_loss_share"],
                     gap_large: float = RULES["gap_large"]) -> Finding | None:
    """High training loss with a small gap -> less regularization or a bigger model."""
    losses = _finite(train_loss)
    if not losses or not val_loss:
        return None
    gap = relative_gap(train_loss[-1], val_loss[-1])
    if math.isfinite(gap) and gap >= gap_large:
        return None
    if task == "classification":
        metrics = _finite(train_metric)
        if not metrics or metrics[-1] >= accuracy:
            return None
        evidence = f"training accuracy {metrics[-1]:.3f} at the last epoch (rule: below {accuracy:g}, gap below {gap_large:g})"
    else:
        if losses[-1] <= share * losses[0]:
            return None
        evidence = (f"training loss {losses[-1]:.4g} at the last epoch is {losses[-1] / losses[0]:.2f} of the first "
                    f"epoch's (rule: above {share:g}, gap below {gap_large:g})")
    l2, dropout = current.get("l2", 0.0), current.get("dropout", 0.0)
    widths = current.get("widths") or []
    suggestions = []
    if l2 > 0:
        suggestions.append("a weaker L2 penalty: " + _grid("penalty.l2", weaker(l2)))
    if dropout > 0:
        suggestions.append("less dropout: " + _grid("model.dropout", [round(dropout / 2, 3), 0.0]))
    if widths:
        bigger = [[2 * w for w in widths], [4 * w for w in widths], [*widths, widths[-1]]]
        suggestions.append("a bigger model: --grid 'model.widths=" + str(bigger).replace(" ", "") + "'")
    else:
        suggestions.append("a bigger model: more units or layers (model.widths / model.channels)")
    suggestions.append("longer training: --set train.epochs=" + str(int(current.get("epochs", 100)) * 2))
    return Finding("high training loss", who, evidence, suggestions)


def diverged_finding(who: str, train_loss: list[float], diverged_at: int | None, lr: float | None, *,
                     factor: float = RULES["diverge_factor"]) -> Finding | None:
    """A diverged member -> a lower learning rate or gradient clipping."""
    losses = _finite(train_loss)
    if diverged_at is not None:
        evidence = f"the loss became NaN or infinite at epoch {diverged_at}"
    elif losses and len(losses) < len(train_loss):
        evidence = "the training loss holds NaN or infinite values"
    elif losses and min(losses) > 0 and losses[-1] > factor * min(losses):
        evidence = (f"the training loss ended at {losses[-1]:.4g}, {losses[-1] / min(losses):.1f} times its minimum "
                    f"(rule: above {factor:g} times)")
    else:
        return None
    suggestions = ["gradient clipping: --set train.clip.by=norm " + _grid("train.clip.max", [1.0, 5.0])]
    if lr:
        suggestions.insert(0, "a lower learning rate: " + _grid("train.lr", [lr / 3, lr / 10, lr / 30]))
    return Finding("divergence", who, evidence, suggestions)


def edge_finding(key: str, values: list[float], best_value: float, *, log: bool) -> Finding | None:
    """The best value of a one-key numeric search at the smallest or largest value tried -> extend the grid there."""
    ordered = sorted(set(float(v) for v in values))
    if len(ordered) < 2 or best_value not in (ordered[0], ordered[-1]):
        return None
    positive = [v for v in ordered if v > 0]
    if best_value == ordered[-1]:
        if log and best_value > 0:
            more = [best_value * 10, best_value * 100, best_value * 1000]
        else:
            step = ordered[-1] - ordered[-2]
            more = [best_value + step, best_value + 2 * step, best_value + 3 * step]
        side = "largest"
    else:
        side = "smallest"
        if best_value == 0:
            if not positive:
                return None
            more = [positive[0] / 1000, positive[0] / 100, positive[0] / 10]
        elif log:
            more = [best_value / 1000, best_value / 100, best_value / 10]
        else:
            step = ordered[1] - ordered[0]
            more = [v for v in (best_value - 3 * step, best_value - 2 * step, best_value - step) if v >= 0]
            if not more:
                return None
    evidence = f"the best {key} = {best_value:.3g} is the {side} value of the grid ({ordered[0]:.3g} .. {ordered[-1]:.3g})"
    hint = " (0 was best: the penalty may not be needed; these check the smallest strengths)" if best_value == 0 else ""
    return Finding("best value at the grid's edge", key, evidence,
                   [f"extend the grid past the {side} value{hint}: " + _grid(key, sorted(more))])


__all__ = ["RULES", "Finding", "diverged_finding", "edge_finding", "gap_finding", "overfit_onset", "relative_gap",
           "smooth", "stronger", "underfit_finding", "weaker"]
