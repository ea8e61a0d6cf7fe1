"""Named events of a training run, and who hears them.

    train_begin(trainer)              before the first epoch (also after a resume)
    epoch_begin(trainer, epoch)       before an epoch's first step (epoch counts from 0)
    step_end(trainer, step)           after each optimizer step and projection
    epoch_end(trainer, record)        after validation and early stopping, with the epoch's `EpochRecord`
    train_end(trainer)                after the last epoch (also after Ctrl-C), before the best weights return

A `Listener` only observes (metrics.csv, TensorBoard, the progress bar, MLflow next); a `Controller` may change the
run (drop members with `trainer.keep_members`, stop them: successive halving, Optuna's pruner, pruning schedules).
Listeners hear an event before controllers do, so what they record is the epoch as it was trained. Early stopping
is the loop's own controller and runs before both (it decides what `record.improved` and `record.stopped` say).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .loop import EpochRecord, Trainer

EVENTS = ("train_begin", "epoch_begin", "step_end", "epoch_end", "train_end")


class Listener:
    """Observes a run; override the events you need (each does nothing by default). Must not change the run."""

    def train_begin(self, trainer: "Trainer") -> None:
        pass

    def epoch_begin(self, trainer: "Trainer", epoch: int) -> None:
        pass

    def step_end(self, trainer: "Trainer", step: int) -> None:
        pass

    def epoch_end(self, trainer: "Trainer", record: "EpochRecord") -> None:
        pass

    def train_end(self, trainer: "Trainer") -> None:
        pass


class Controller(Listener):
    """Like a listener, but allowed to change the run: drop or stop members, change what the next epoch does."""


class EpochCallback(Controller):
    """A plain function `callback(record, trainer)` called at every epoch's end (the loop's earlier callback form)."""

    def __init__(self, callback: Callable[["EpochRecord", "Trainer"], None]) -> None:
        self.callback = callback

    def epoch_end(self, trainer: "Trainer", record: "EpochRecord") -> None:
        self.callback(record, trainer)


def as_handler(item: Any) -> Listener:
    """A Listener or Controller as it is; a plain callable becomes an `EpochCallback` (a controller: it may change the run)."""
    if isinstance(item, Listener):
        return item
    if callable(item):
        return EpochCallback(item)
    raise TypeError(f"callbacks: expected a Listener, a Controller or a function (record, trainer), got {type(item).__name__}")


class Events:
    """The run's listeners and controllers, told about each event in that order."""

    def __init__(self, handlers: list[Any] | None = None) -> None:
        self.listeners: list[Listener] = []
        self.controllers: list[Listener] = []
        for item in handlers or []:
            self.add(item)

    def add(self, item: Any, *, first: bool = False) -> Listener:
        handler = as_handler(item)
        group = self.controllers if isinstance(handler, Controller) else self.listeners
        group.insert(0, handler) if first else group.append(handler)
        return handler

    @property
    def hears_steps(self) -> bool:
        """Whether anyone overrides `step_end` (the loop skips the per-step call otherwise)."""
        return any(type(h).step_end is not Listener.step_end for h in (*self.listeners, *self.controllers))

    def emit(self, event: str, *args: Any) -> None:
        for handler in (*self.listeners, *self.controllers):
            getattr(handler, event)(*args)
