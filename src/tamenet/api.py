"""`fit`: one call from a recipe to a trained population, its summary and (optionally) a run directory."""

from __future__ import annotations

import datetime
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .augment.config_text_audio import modal_augmentation
from .checkpoints import CHECKPOINT_FORMAT, CheckpointMissingError, load_checkpoint
from .compress.distillation import attach_teacher
from .compress.transfer_step import apply_transfer, attach_transfer
from .config import Recipe, RecipeError, to_dict
from .data import SplitData, prepare
from .dist.data_parallel import start as start_data_parallel
from .ensemble import ensemble_recipe, summarize_ensemble
from .models import Population, Wrapped, build_model, count_parameters
from .recipes import load_recipe
from .report.weights import WeightRecorder
from .track import RunDir, atomic_torch_save, atomic_write_text, plot_curves
from .track.trackers import make_trackers
from .track.lock import run_state
from .train import TASK_METRIC, EpochRecord, LoopState, Trainer, evaluate, member_seeds
from .train.loop import resolve_device
from .train.events import Listener
from .train.hyper import member_table
from .train.member_data import MemberData
from .trained import TrainedModel
from .versioning import code_version

SAVE_EVERY_S = 10.0  # rate limit for the best-so-far model.pt and the resumable last.pt


@dataclass
class TrainResult:
    """A finished (or stopped) training job: the model with its best weights, the data, the curves and the summary."""

    model: Population
    recipe: Recipe
    data: SplitData
    history: list[dict]
    summary: dict[str, Any]
    run_dir: Path | None


def served(model: Population) -> Population:
    """The model a run saves and evaluates: an audio `FrontEnd`'s body (it takes the standardized log-mel features
    that `data.preprocessing()` describes), else the model itself."""
    from .train.text_audio_pieces import FrontEnd

    return model.body if isinstance(model, FrontEnd) else model


def served_state(model: Population, state: dict) -> dict:
    """`state` (of `model`) as the state dict of `served(model)`: a front end's buffers left out."""
    if served(model) is model:
        return state
    return {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}


def checkpoint_payload(model: Population, recipe: Recipe, data: SplitData, *, state: dict | None = None, epoch: int) -> dict:
    """What `model.pt` holds: enough to rebuild, reload and apply the model with its preprocessing."""
    state = served_state(model, state if state is not None else model.state_dict())
    model = served(model)
    return {
        "format": CHECKPOINT_FORMAT,
        "tamenet_version": __version__,
        "recipe": to_dict(recipe),
        "preprocessing": data.preprocessing(),
        "n_in": data.n_features,
        "n_out": data.n_outputs,
        "members": model.members,
        "epoch": epoch,
        "state_dict": state,
    }


def resume_payload(recipe: Recipe, trainer_state: dict) -> dict:
    """What `last.pt` holds: the recipe and the training state `fit(resume=...)` continues from."""
    return {"format": CHECKPOINT_FORMAT, "tamenet_version": __version__, "recipe": to_dict(recipe),
            "trainer": trainer_state}


def best_state_dict(trainer: Trainer) -> dict:
    """The model's state dict with every member at its best epoch so far."""
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    state.update(trainer.best_state)
    return state


class RunWriter(Listener):
    """The listener that keeps a run directory current: metrics every epoch, checkpoints at most every few seconds."""

    def __init__(self, run: RunDir, data: SplitData) -> None:
        self.run, self.data = run, data
        self.last_save = -float("inf")

    def epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        self.run.log_epoch(record.rows)
        now = time.monotonic()
        if now - self.last_save >= SAVE_EVERY_S:
            self.save(trainer)
            self.last_save = now

    def save(self, trainer: Trainer, *, final: bool = False) -> None:
        """model.pt (the best weights so far; at the end, the model as returned) and last.pt (the state to resume
        from), the latter only from a completed epoch: after an interrupt or error mid-epoch the last.pt already
        saved stands, so a resume never trains on top of half an epoch."""
        if not trainer.recipe.track.checkpoint:
            return
        state = trainer.model.state_dict() if final else best_state_dict(trainer)
        payload = checkpoint_payload(trainer.model, trainer.recipe, self.data, state=state, epoch=trainer.state.epoch)
        atomic_torch_save(self.run.path / "model.pt", payload)
        resume = trainer.resume_state if final else (trainer.state_dict() if trainer.resumable else None)
        if resume is not None:
            atomic_torch_save(self.run.path / "last.pt", resume_payload(trainer.recipe, resume))


def summarize(trainer: Trainer, state: LoopState, data: SplitData, *, wall_time: float) -> dict[str, Any]:
    """Final train / validation / test figures of every member, evaluated without dropout or noise.

    A part without rows has no entry (and without validation rows no generalization gap); instead
    the summary's "validation" entry then says that early stopping and restoring were off.
    """
    task, metric = data.task, TASK_METRIC[data.task]
    std = trainer.target_std
    splits = {"train": (data.X_train, data.y_train)}
    if len(data.X_val):
        splits["val"] = (data.X_val, data.y_val)
    if len(data.X_test):
        splits["test"] = (data.X_test, data.y_test)  # the test split is touched here only, once
    model = served(trainer.model)  # audio: the body over the standardized log-mel features `data` holds
    scores = {name: evaluate(model, X, y, task, target_std=std) for name, (X, y) in splits.items()}
    hyper_rows = member_table(trainer.recipe)
    members = []
    for m in range(trainer.members):
        entry: dict[str, Any] = {"member": m, **hyper_rows[m]}
        for name, (loss, value) in scores.items():
            entry[name] = {"loss": float(loss[m]), metric: float(value[m])}
        if "val" in entry:
            train, val = entry["train"], entry["val"]
            entry["generalization_gap"] = {
                "loss": val["loss"] - train["loss"],
                metric: (train[metric] - val[metric]) if metric == "accuracy" else (val[metric] - train[metric]),
            }
        entry["best_epoch"] = state.best_epoch[m]
        entry["stopped_early"] = bool(state.stopped[m])
        entry["diverged_at_epoch"] = state.diverged_at[m]
        members.append(entry)
    summary: dict[str, Any] = {
        "task": task,
        "metric": metric,
        "dataset": data.name,
        "sizes": data.sizes(),
        **({} if len(data.X_val) else {"validation": no_validation_note(trainer.recipe)}),
        "members": trainer.members,
        "epochs_run": state.epoch,
        "epochs_max": trainer.recipe.train.epochs,
        "interrupted": state.interrupted,
        "parameters": count_parameters(trainer.model),
        "wall_time_s": round(wall_time, 3),
        "train_time_s": round(state.wall_time, 3),
    }
    if trainer.members == 1:
        summary.update({k: v for k, v in members[0].items() if k != "member"})
    else:
        summary["per_member"] = members
    return summary


def no_validation_note(recipe: Recipe) -> dict[str, Any]:
    """The summary's "validation" entry for a run without validation rows (data.val: 0, or none predefined).

    Every epoch counts as the best, so nothing stops early and the weights kept are the last epoch's;
    a `patience` in the recipe is kept but unused, which the entry's "warning" says.
    """
    es = recipe.train.early_stopping
    note: dict[str, Any] = {
        "rows": 0,
        "early_stopping": False,
        "restore_best": False,
        "note": ("no validation rows: early stopping and restore_best were off; the weights are the last epoch's "
                 "(a diverged member's: its last finite ones)"),
    }
    if es.patience is not None:
        note["warning"] = (f"train.early_stopping.patience {es.patience} is set but unused: there are no "
                           "validation rows to monitor")
    return note


def provenance(recipe: Recipe, data: SplitData) -> dict[str, Any]:
    """What reproduces a run (I4): recipe, seeds, code version, data fingerprint, library versions."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tamenet": __version__,
        "code_version": code_version(),
        "seeds": member_seeds(recipe),
        "data_seed": recipe.data.seed,
        "data_fingerprint": data.fingerprint,
        "data_sizes": data.sizes(),
        "data_split": data.rows.describe() if data.rows is not None else None,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def fit(
    recipe: Recipe | dict | str | Path | None = None,
    *,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    module: torch.nn.Module | None = None,
    callbacks: list[Callable[[EpochRecord, Trainer], None]] | None = None,
    resume: str | Path | None = None,
    ensemble: int | None = None,
    keep_last: bool = True,
    setup: Callable[[Population, SplitData], None] | None = None,
    translator: Any = None,
    synonyms: dict[str, tuple[str, ...]] | None = None,
    train_per_class: int | None = None,
) -> TrainResult:
    """Train the population a recipe describes (the default job when None) and summarize it.

    `out` writes a run directory (recipe, metrics.csv, summary.json, model.pt, curves.png, TensorBoard);
    `X, y` train on arrays instead of the recipe's data set (split by data.val / data.test), or exactly on
    them when `X_val, y_val` and / or `X_test, y_test` give the other parts (a part not given is empty;
    the run directory's split.json records that the caller split them); `module` trains a user's own network as a
    population of one; `resume` continues a run directory from its last checkpoint. `ensemble=M` trains
    seeds base..base+M-1 (base: the recipe's seed) as one population and adds to the summary, under
    "ensemble", the figures of their averaged prediction beside the members' mean and best (D5).
    `keep_last=False` removes the run directory's last.pt (the resume state, as large as the model and its
    optimizer state together) once the run has finished; an interrupted or failed run always keeps it.
    `setup(model, data)` is called on the built model (after `train.init_from`) before training: it may load
    starting weights and pruning masks (the rounds of `compress.lottery.iterative_pruning`).

    Text and audio augmentation (``augment.text`` / ``augment.audio``, `tamenet.train.text_audio_fit`) train in
    this same loop: `translator` is the back-translation paraphraser (`tamenet.augment.text.BackTranslator` or any
    ``str -> str``), `synonyms` a word -> synonyms map replacing the built-in one, and `train_per_class` keeps at
    most that many training rows of each class (drawn with ``data.seed``; text and audio data only, for the
    small-training-set studies).
    """
    started = time.perf_counter()
    saved = None
    if resume is not None:
        resume = resume_folder(resume)
        saved = load_checkpoint(resume / "last.pt", kind="resume")
        recipe, out = saved["recipe"], resume  # overrides may still extend it, e.g. train.epochs
    recipe = load_recipe(recipe, overrides)
    if ensemble is not None:
        recipe = load_recipe(ensemble_recipe(recipe, ensemble))
        if module is not None and ensemble != 1:
            raise ValueError(f"ensemble: a user's module trains as a population of one, got ensemble={ensemble!r}")
    modal = modal_augmentation(recipe)  # "text" / "audio" when their augmentation is on (refused on other data)
    if modal is None and (translator is not None or synonyms is not None or train_per_class is not None):
        raise ValueError("translator / synonyms / train_per_class: expected text or audio augmentation "
                         "(augment.text / augment.audio) in the recipe, got none")
    if modal is not None:
        given = [name for name, value in (("X", X), ("X_val", X_val), ("X_test", X_test), ("module", module))
                 if value is not None]
        if given:
            raise ValueError(f"augment.{modal}: {modal} augmentation trains on the recipe's data set and model, "
                             f"got {', '.join(given)}; expected data.name text, sentiment or audio instead")
        if modal == "audio" and (recipe.train.init_from is not None or recipe.distill.active):
            raise RecipeError("augment.audio: a model over waveforms takes no source run or teacher here; expected "
                              "train.init_from and distill.teacher unset with audio augmentation")
    parallel = start_data_parallel(resolve_device(recipe.train.device))  # under torchrun: join the other ranks
    if parallel is not None and not parallel.ranks.is_main:
        out = None  # only rank 0 writes the run directory (and reports to the trackers)
    seeds = member_seeds(recipe)
    torch.manual_seed(seeds[0])
    modal_rows = None
    if modal is not None:
        from .train.text_audio_fit import modal_run

        modal_setup = modal_run(recipe, modal, translator=translator, synonyms=synonyms,
                                train_per_class=train_per_class)
        data, model, modal_rows = modal_setup.data, modal_setup.model, modal_setup.rows
    else:
        data = prepare(recipe.data, X=X, y=y, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test)
    if ensemble is not None and not len(data.X_val):
        raise ValueError("ensemble: the ensemble summary compares the members on the validation rows, and this "
                         "split has none (data.val: 0, or no 'val' part given); expected validation rows, or train the "
                         "seeds as a population (seed: [0, 1, ...]) without ensemble")
    if module is not None:
        model: Population = Wrapped(module, seed=seeds[0])
    elif modal is None:
        model = build_model(recipe.model, n_in=data.n_features, n_out=data.n_outputs, seeds=seeds,
                            input_shape=data.image_shape, prune=recipe.prune,
                            quantize=recipe.quantize)
    transfer = apply_transfer(model, recipe, data)  # H4: a resumed run's weights then come from its checkpoint
    if setup is not None:
        setup(model, data)
    rows = modal_rows if modal_rows is not None else MemberData.from_split(data, model.members)
    # built before the run directory: a layer name the model lacks is refused before any file is written
    trainer = Trainer(model, rows, recipe, callbacks=callbacks, keep_resume_state=out is not None)
    attach_transfer(trainer, transfer)
    if modal is not None:
        modal_setup.attach(trainer)  # the text or audio augmentation piece (training rows only)
    attach_teacher(trainer, recipe, data)  # H3: the teacher's logits, checked against this run's data and split
    run = RunDir(out, tensorboard=recipe.track.tensorboard, exist_ok=saved is not None) if out is not None else None
    writer = RunWriter(run, data) if run is not None else None
    if writer is not None:
        trainer.events.add(writer, first=True)
        trainer.events.add(WeightRecorder(run.path))  # weights.csv: per-layer norms and zero shares for the report
    trackers = [] if parallel is not None and out is None else \
        make_trackers(recipe.track, run.path if run is not None else None, to_dict(recipe))  # MLflow, W&B
    for tracker in trackers:
        trainer.events.add(tracker)
    if saved is not None:
        trainer.load_state_dict(saved["trainer"])
        if run is not None:  # None on the ranks that do not write
            run.rows = [r for r in trainer.history]
    if parallel is not None:  # each rank trains on its shard of every batch, gradients averaged by DDP
        parallel.attach(trainer)
    if run is not None:
        run.write_recipe(to_dict(recipe))
        run.write_json("run.json", provenance(recipe, data))
        atomic_write_text(run.path / "split.json", data.rows.to_json())
    try:
        state = trainer.run()
        summary = summarize(trainer, state, data, wall_time=time.perf_counter() - started)
        if ensemble is not None:
            summary["ensemble"] = summarize_ensemble(served(model), data, summary.get("per_member", [summary]), seeds)
    except BaseException as err:
        if run is not None:
            writer.save(trainer)
            run.finish("failed", message=f"{type(err).__name__}: {err}")
        for tracker in trackers:
            tracker.fail(f"{type(err).__name__}: {err}")
        raise
    if run is not None:
        _finish_run(run, writer, trainer, state, summary, keep_last=keep_last)
        for tracker in trackers:  # once the run directory is complete
            tracker.finish(run.path, summary, TrainedModel(served(model), recipe, data.preprocessing(), run.path))
    return TrainResult(served(model), recipe, data, trainer.history, summary, run.path if run else None)


def resume_folder(path: str | Path) -> Path:
    """The run folder `--resume` names, refused in one line when it cannot be resumed: missing, a file,
    or finished with its last.pt removed."""
    folder = Path(path)
    if not folder.is_dir():
        what = "a file" if folder.exists() else "nothing there"
        raise FileNotFoundError(f"--resume {folder}: expected a run folder written by tamenet train, got {what}")
    if not (folder / "last.pt").exists() and run_state(folder).get("state") == "finished":
        raise CheckpointMissingError(f"cannot resume: no checkpoint {folder / 'last.pt'}: the run finished and its "
                                     "last.pt was removed; train with --keep-last to keep it")
    return folder


def _finish_run(run: RunDir, writer: RunWriter, trainer: Trainer, state: LoopState, summary: dict, *,
                keep_last: bool = True) -> None:
    writer.save(trainer, final=True)
    run.write_json("summary.json", summary)
    if trainer.recipe.track.plots and trainer.history:
        plot_curves(
            trainer.history,
            run.path / "curves.png",
            metric=summary["metric"],
            best_epochs=list(state.best_epoch),
            title=f"{summary['dataset']}: train vs validation",
        )
    diverged = [m for m, d in enumerate(state.diverged_at) if d is not None]
    if state.interrupted:
        where = (f"after epoch {state.epoch}" if trainer.resumable else
                 f"during epoch {state.epoch + 1} (that epoch is discarded; --resume continues from the last "
                 "completed epoch saved in last.pt)")
        run.finish("interrupted", message=f"interrupted {where}")
    elif diverged and len(diverged) == trainer.members:
        run.finish("failed", message=diverged_message(state.diverged_at))
    else:
        if not keep_last:
            (run.path / "last.pt").unlink(missing_ok=True)
        run.finish("finished", epochs=state.epoch)


def diverged_message(diverged_at: list[int | None]) -> str:
    """One line naming the members whose loss became NaN or infinite, and when."""
    parts = [f"member {m} at epoch {d}" for m, d in enumerate(diverged_at) if d is not None]
    return "loss became NaN or infinite: " + ", ".join(parts) + "; the best weights before that were kept"
