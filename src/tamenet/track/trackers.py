"""Experiment trackers beside the run directory (I3): MLflow and Weights & Biases, as listeners of the loop.

``track: {mlflow: true}`` logs a run to MLflow: the resolved recipe as parameters (dotted keys),
per-epoch metrics per member (a population gets one child run per member, tagged with its member,
candidate, fold and chunk), and at the end `summary.json`, `curves.png`, `recipe.yaml` and the
delivered model (`mlflow.pytorch.log_model`, raw rows in, probabilities or target values out,
with an input example and its signature). The store is ``$MLFLOW_TRACKING_URI`` when set, else a
SQLite file ``mlflow.db`` in the run directory (artifacts under ``mlartifacts/`` there).

``track: {wandb: true}`` logs the same parameters and metrics (``member_<m>/<metric>`` for a
population) and the summary to Weights & Biases in offline mode unless ``$WANDB_MODE`` says
otherwise, under ``<run>/wandb/`` (``wandb sync`` uploads it later).

A tracker never fails a run: its first error becomes one warning, the tracker stops, and the run
directory is written as without it (`Guarded`).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

from ..train.events import Listener

MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
EXPERIMENT = "tamenet"
"""The MLflow experiment (and W&B project) runs go to unless the recipe has a name."""


class TrackerWarning(UserWarning):
    """A tracker failed; the run went on without it."""


def flat_params(recipe: dict, prefix: str = "") -> dict[str, str]:
    """The recipe as {dotted key: value as text}: `{"train": {"lr": 0.1}}` -> `{"train.lr": "0.1"}`."""
    out: dict[str, str] = {}
    for key, value in recipe.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def _numbers(row: dict) -> dict[str, float]:
    """The finite numeric metrics of a metrics row (epoch and member are the step and the run)."""
    return {k: float(v) for k, v in row.items()
            if k not in ("epoch", "member") and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def final_metrics(summary: dict) -> dict[int, dict[str, float]]:
    """Per member, its final figures from the summary: `final_<split>_<quantity>` (e.g. `final_test_accuracy`; in
    cross-validation `final_fit_loss`, `final_scored_accuracy`, ...)."""
    entries = summary.get("per_member") or [{**summary, "member": 0}]
    return {int(e.get("member", m)): {f"final_{split}_{q}": float(v) for split in ("train", "val", "test", "fit", "scored")
                                      if isinstance(e.get(split), dict) for q, v in e[split].items()
                                      if isinstance(v, (int, float)) and math.isfinite(v)}
            for m, e in enumerate(entries)}


class Tracker(Listener):
    """A listener that also hears how the run ended: `finish(run_dir, summary, model)` once the run directory
    is complete, or `fail(message)` when training raised."""

    name = "tracker"

    def finish(self, run_dir: Path, summary: dict, model: Any) -> None:
        pass

    def fail(self, message: str) -> None:
        pass


class Guarded(Listener):
    """A tracker whose first exception is a `TrackerWarning`, after which it is silent: the run goes on."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker, self.failed = tracker, False

    def _call(self, event: str, *args: Any) -> None:
        if self.failed:
            return
        try:
            getattr(self.tracker, event)(*args)
        except Exception as err:  # noqa: BLE001 - a tracker must never fail the run
            self.failed = True
            warnings.warn(f"the {self.tracker.name} tracker failed at {event} ({type(err).__name__}: "
                          f"{' '.join(str(err).split())[:300]}); the run goes on without it", TrackerWarning,
                          stacklevel=2)

    def train_begin(self, trainer: Any) -> None:
        self._call("train_begin", trainer)

    def epoch_end(self, trainer: Any, record: Any) -> None:
        self._call("epoch_end", trainer, record)

    def train_end(self, trainer: Any) -> None:
        self._call("train_end", trainer)

    def finish(self, run_dir: Path, summary: dict, model: Any) -> None:
        self._call("finish", run_dir, summary, model)

    def fail(self, message: str) -> None:
        self._call("fail", message)


class MLflowTracker(Tracker):
    """Logs a run to MLflow through its client (see the module's docstring); child runs for a population."""

    name = "mlflow"

    def __init__(self, run_dir: Path, recipe: dict, *, experiment: str | None = None, folds: int | None = None) -> None:
        self.run_dir, self.recipe = Path(run_dir), recipe
        self.experiment = experiment or recipe.get("name") or EXPERIMENT
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(self.run_dir / MLFLOW_DB).resolve()}"
        self.client: Any = None
        self.parent: str | None = None
        self.experiment_id: str | None = None
        self.folds = folds  # cross-validation and search: member m is candidate m // folds on fold m % folds
        self.segment = -1  # one per population or memory chunk the job trains (one for `fit`)
        self.children: dict[tuple[int, int], str] = {}  # (segment, member) -> child run
        self.latest: dict[int, str] = {}  # member -> its latest child run (final figures go there)

    def train_begin(self, trainer: Any) -> None:
        if self.client is None:
            self._start(trainer)
        self.segment += 1
        if trainer.members > 1 or self.folds:
            self._children(trainer)

    def _start(self, trainer: Any) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            location = (self.run_dir / MLFLOW_ARTIFACTS).resolve().as_uri()
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
        tags = {"tamenet.run_dir": str(self.run_dir), "tamenet.members": str(trainer.members)}
        self.parent = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags=tags).info.run_id
        params = [Param(k, v[:6000]) for k, v in flat_params(self.recipe).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.parent, params=params[start : start + 100])
        self.experiment_id = experiment_id

    def _children(self, trainer: Any) -> None:
        """One child run per member of this population or chunk, tagged with its candidate, fold and chunk, and
        given the numbers it trains with as parameters."""
        from mlflow.entities import Param

        from ..train.hyper import member_table

        numbers = member_table(trainer.recipe)
        for m in getattr(trainer, "member_ids", range(trainer.members)):
            candidate, fold = (m // self.folds, m % self.folds) if self.folds else (m, "none")
            tags = {"mlflow.parentRunId": self.parent, "member": str(m), "candidate": str(candidate),
                    "fold": str(fold), "chunk": str(self.segment)}
            name = f"{self.run_dir.name}-{self.segment}-member{m}" if self.folds else f"{self.run_dir.name}-member{m}"
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            # the loop holds the numbers in float32: 7 significant digits give the recipe's own values back
            params = [Param(k, format(v, ".7g") if isinstance(v, float) else str(v)) for k, v in numbers[m].items()]
            self.client.log_batch(run_id, params=params)
            self.children[(self.segment, m)] = self.latest[m] = run_id

    def epoch_end(self, trainer: Any, record: Any) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        for row in record.rows:
            run_id = self.children.get((self.segment, row.get("member")), self.parent)
            metrics = [Metric(k, v, stamp, int(row["epoch"])) for k, v in _numbers(row).items()]
            self.client.log_batch(run_id, metrics=metrics)

    def finish(self, run_dir: Path, summary: dict, model: Any) -> None:
        from mlflow.entities import Metric

        for name in ("summary.json", "curves.png", "recipe.yaml", "run.json", "cv.json", "cv.png", "search.json",
                     "path.png", "report.html"):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.parent, str(run_dir / name))
        for member, final in final_metrics(summary).items():
            if final:
                run_id = self.latest.get(member, self.parent)
                self.client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in final.items()])
        if model is not None:
            self._log_model(model)
        self._end("FINISHED")

    def _log_model(self, trained: Any) -> None:
        """The delivered model (member 0) with an input example and the signature inferred from it."""
        import mlflow
        import torch
        from mlflow.models import infer_signature

        from ..delivery import delivered_model, example_rows

        module = delivered_model(trained, 0)
        example = example_rows(trained)
        with torch.no_grad():
            output = module(example).numpy()
        signature = infer_signature(example.numpy(), output)
        with _tracking_uri(self.uri), mlflow.start_run(run_id=self.parent):
            mlflow.pytorch.log_model(module, name="model", signature=signature, input_example=example.numpy(),
                                     pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])

    def fail(self, message: str) -> None:
        if self.client is not None:
            self.client.set_tag(self.parent, "tamenet.error", message[:5000])
            self._end("FAILED")

    def _end(self, status: str) -> None:
        for run_id in [*self.children.values(), self.parent]:  # every population's and chunk's child runs
            self.client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (which `log_model` needs) pointed at `uri` within the block, the caller's global
    tracking URI (set or not) restored afterwards."""
    from mlflow.tracking._tracking_service import utils

    previous = utils._tracking_uri
    utils.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils._tracking_uri = previous


class WandbTracker(Tracker):
    """Logs a run to Weights & Biases, offline by default (see the module's docstring)."""

    name = "wandb"

    def __init__(self, run_dir: Path, recipe: dict, *, folds: int | None = None) -> None:
        self.run_dir, self.recipe = Path(run_dir), recipe
        self.run: Any = None
        self.folds, self.segment = folds, -1

    def train_begin(self, trainer: Any) -> None:
        self.segment += 1
        if self.run is not None:
            return
        import wandb

        self.members = trainer.members
        self.run = wandb.init(project=self.recipe.get("name") or EXPERIMENT, name=self.run_dir.name,
                              dir=str(self.run_dir), config=self.recipe, mode=os.environ.get("WANDB_MODE", "offline"),
                              reinit="create_new", settings=wandb.Settings(silent=True))

    def epoch_end(self, trainer: Any, record: Any) -> None:
        metrics: dict[str, float] = {}
        for row in record.rows:
            member = f"member_{row['member']}/"
            prefix = f"population_{self.segment}/{member}" if self.folds else (member if self.members > 1 else "")
            metrics.update({f"{prefix}{k}": v for k, v in _numbers(row).items()})
        self.run.log(metrics, step=int(record.epoch))

    def finish(self, run_dir: Path, summary: dict, model: Any) -> None:
        for member, final in final_metrics(summary).items():
            prefix = f"member_{member}/" if self.members > 1 else ""
            for key, value in final.items():
                self.run.summary[f"{prefix}{key}"] = value
        self.run.finish()

    def fail(self, message: str) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1)


def make_trackers(track: Any, run_dir: Path | None, recipe: dict, *, folds: int | None = None) -> list[Guarded]:
    """The guarded trackers `track` (a `TrackConfig`) turns on; none without a run directory. `folds`: a
    cross-validation or search job, whose member m is candidate m // folds on fold m % folds."""
    if run_dir is None:
        return []
    out = []
    if getattr(track, "mlflow", False):
        out.append(Guarded(MLflowTracker(run_dir, recipe, folds=folds)))
    if getattr(track, "wandb", False):
        out.append(Guarded(WandbTracker(run_dir, recipe, folds=folds)))
    return out


__all__ = ["EXPERIMENT", "MLFLOW_ARTIFACTS", "MLFLOW_DB", "Guarded", "MLflowTracker", "Tracker", "TrackerWarning",
           "WandbTracker", "final_metrics", "flat_params", "make_trackers"]
