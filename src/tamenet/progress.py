"""Live training progress: a rich progress bar on a terminal, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .train import EpochRecord, Trainer
from .train.events import Listener

PLAIN_EVERY_S = 2.0  # plain mode prints at most one line per this many seconds (and the last epoch)


def _describe(record: EpochRecord, trainer: Trainer) -> str:
    rows = record.rows
    metric = trainer.metric
    if len(rows) == 1:
        r = rows[0]
        return (f"epoch {record.epoch:>4}/{trainer.recipe.train.epochs}  train loss {r['train_loss']:.4f}  "
                f"val loss {r['val_loss']:.4f}  val {metric} {r[f'val_{metric}']:.4f}")
    best = min(rows, key=lambda r: r["val_loss"] if r["val_loss"] == r["val_loss"] else float("inf"))
    active = int(trainer.active().sum())
    return (f"epoch {record.epoch:>4}/{trainer.recipe.train.epochs}  {active}/{len(rows)} members training  "
            f"best val loss {best['val_loss']:.4f} (member {best['member']})")


class PlainProgress(Listener):
    """One line per few seconds, for output that is not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.last = stream, -float("inf")

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        self.on_epoch(record, trainer)

    def on_epoch(self, record: EpochRecord, trainer: Trainer) -> None:
        now = time.monotonic()
        last_epoch = record.epoch == trainer.recipe.train.epochs or not bool(trainer.active().any())
        if now - self.last >= PLAIN_EVERY_S or last_epoch:
            print(_describe(record, trainer), file=self.stream, flush=True)
            self.last = now


class RichProgress(Listener):
    """A progress bar with the epoch, train and validation loss, redrawn in place."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=Console(file=stream), transient=False,
        )
        self.task = None

    def __enter__(self) -> "RichProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        self.on_epoch(record, trainer)

    def on_epoch(self, record: EpochRecord, trainer: Trainer) -> None:
        if self.task is None:
            self.task = self.progress.add_task("", total=trainer.recipe.train.epochs)
        self.progress.update(self.task, completed=record.epoch, description=_describe(record, trainer))


def make_progress(stream: TextIO = sys.stdout) -> PlainProgress | RichProgress:
    """Rich on a terminal, plain lines elsewhere."""
    return RichProgress(stream) if stream.isatty() else PlainProgress(stream)
