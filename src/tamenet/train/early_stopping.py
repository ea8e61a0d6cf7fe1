"""Early stopping (G2), the loop's own controller: per member, whether the monitored value improved, whether its
patience ran out, whether its loss diverged; the best weights follow the improvements.

A member improves when `sign * value < best - min_delta` (sign +1 when lower is better); after `patience` epochs
without improvement it stops. A member whose training (or validation) loss is NaN or infinite is marked diverged
and frozen. Without validation rows every epoch counts as the best so far (the last weights are kept).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..config import Recipe, RecipeError
from .events import Controller
from .losses import TASK_METRIC
from .member_state import keep_improved_

if TYPE_CHECKING:
    from .loop import EpochRecord, Trainer


def monitor_of(recipe: Recipe, task: str) -> tuple[str, float]:
    """(column, sign): sign +1 when lower is better."""
    monitor = recipe.train.early_stopping.monitor
    metric = TASK_METRIC[task]
    valid = {"val_loss": 1.0, f"val_{metric}": -1.0 if metric == "accuracy" else 1.0}
    if monitor not in valid:
        raise RecipeError(
            f"train.early_stopping.monitor: '{monitor}' is not reported for a {task} task (valid: {', '.join(valid)})"
        )
    return monitor, valid[monitor]


class EarlyStopping(Controller):
    """Fills the record's `improved`, `stopped` and `diverged` and the trainer's loop state; keeps the best weights."""

    def __init__(self, recipe: Recipe, task: str) -> None:
        self.cfg = recipe.train.early_stopping
        self.monitor, self.sign = monitor_of(recipe, task)

    def epoch_end(self, trainer: "Trainer", record: "EpochRecord") -> None:
        state, es, members = trainer.state, self.cfg, trainer.members
        has_val = trainer.validation is not None
        was_active = trainer.active()
        improved, diverged = [False] * members, [False] * members
        for m, row in enumerate(record.rows):
            if not was_active[m]:
                continue
            checked = (row["train_loss"], row["val_loss"]) if has_val else (row["train_loss"],)
            if not all(math.isfinite(v) for v in checked):
                state.diverged_at[m] = record.epoch
                diverged[m] = True
                continue
            value = self.sign * row[self.monitor] if has_val else -float(record.epoch)
            improved[m] = value < state.best_value[m] - es.min_delta if has_val else True  # min_delta does not apply
            if improved[m]:
                state.best_value[m], state.best_epoch[m], state.wait[m] = value, record.epoch, 0
            else:
                state.wait[m] += 1
                if es.patience is not None and state.wait[m] >= es.patience:
                    state.stopped[m] = True
        if trainer.keeps_best:
            keep_improved_(trainer.best_state, trainer.model, torch.tensor(improved))
        record.improved, record.stopped, record.diverged = improved, list(state.stopped), diverged
