"""`cross_validate` and `search`: model selection jobs that write a run directory, one library call each."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Recipe, to_dict
from ..compress.distillation import refuse_in_cross_validation
from ..compress.transfer_step import refuse_transfer_in_cross_validation
from ..dist.data_parallel import this_rank_only
from ..recipes import load_recipe
from ..registry import lookup
from ..track import RunDir
from ..train import TASK_METRIC, EpochRecord, Trainer, member_seeds
from ..train.events import Listener
from .cv import STOP_SHARE, CVRun, Pool, candidate_table, make_pool, run_cv
from .memory import memory_budget
from .plots import plot_cv, plot_path
from .search import best_index, candidate_recipe, parse_grid, run_search
from .splits import MAX_SPLITS, kfold, make_folds
from .options import check_spread
from .ranks import Spread
from .trials import BATCH, PRUNERS, SAMPLERS, StorageError, open_storage, parse_space, redact, run_trials, study_rows


class MetricsWriter(Listener):
    """Writes each epoch's rows of a cross-validation population to the run directory's metrics.csv."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        self.run_dir.log_epoch(record.rows)

    def remote_rows(self, rows: list[dict]) -> None:
        """The metrics rows of a chunk another rank trained (a distributed search), one epoch at a time."""
        for epoch in sorted({row["epoch"] for row in rows}):
            self.run_dir.log_epoch([row for row in rows if row["epoch"] == epoch])


def refuse_in_folds(recipe: Recipe) -> None:
    """What cross-validation and search cannot do, refused by name: a teacher or a source run (they may have
    seen the scored rows); a text or audio operation on data of another kind. Text and audio augmentation train in
    the folds (`modal_folds`)."""
    from ..augment.config_text_audio import modal_augmentation

    refuse_in_cross_validation(recipe)
    refuse_transfer_in_cross_validation(recipe)
    modal_augmentation(recipe)


def _start(source, overrides, out, *, scheme: str, folds: int, p: int, max_splits: int, keys: list[str] = ()):
    """The checked recipe, its pool (test split set aside), the folds, and the run directory (or None)."""
    recipe = load_recipe(source, overrides)
    refuse_in_folds(recipe)
    pool = make_pool(recipe, waveforms=any(k.startswith("augment.audio.") for k in keys))  # searched strengths
    stratify = pool.task == "classification" and recipe.data.stratify
    fold_list = make_folds(scheme, pool.y, folds=folds, seed=recipe.data.seed, val=recipe.data.val,
                           stratify=stratify, p=p, max_splits=max_splits, groups=pool.groups)
    run_dir = RunDir(out, tensorboard=False) if out is not None else None
    if run_dir is not None:
        run_dir.write_recipe(to_dict(recipe))
    return recipe, pool, fold_list, run_dir


def _sizes(run: CVRun, pool) -> dict[str, Any]:
    return {"pool": len(pool.y), "test_set_aside": pool.test_rows, "fit": run.rows.fit_sizes[0],
            "stop": run.rows.stop_sizes[0], "scored": sorted({len(scored) for _, scored in run.folds})}


def _member_rows(run: CVRun, metric: str) -> list[dict]:
    k = len(run.folds)
    return [
        {"member": m, "candidate": m // k, "fold": m % k, "best_epoch": run.best_epoch[m],
         "diverged_at_epoch": run.diverged_at[m], "dropped_at_epoch": run.dropped_at[m],
         "fit": {q: run.scores["fit"][q][m] for q in ("loss", metric)},
         "scored": {q: run.scores["scored"][q][m] for q in ("loss", metric)}}
        for m in range(len(run.best_epoch))
    ]


def cross_validate(
    recipe: Recipe | dict | str | Path | None = None,
    *,
    max_memory: str | int | None = None,
    scheme: str = "kfold",
    folds: int = 10,
    p: int = 2,
    max_splits: int = MAX_SPLITS,
    stop_share: float = STOP_SHARE,
    halving: int | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    callbacks=None,
    spread: Spread | None = None,
    side_by_side: int | None = None,
) -> dict[str, Any]:
    """Cross-validate the recipe (every per-member list a candidate) with all folds trained as one population.

    `side_by_side`: on the CPU, the population trains as up to this many parts side by side, one thread each
    (None: one per intra-op thread; 1: one population; see `cv.run_cv`). The numbers do not change.

    With `spread` (a distributed job, `ranks.py`) the population's chunks are shared out over the ranks; give
    `out` on the main rank only (the others write nothing)."""
    started = time.perf_counter()
    memory_budget(max_memory)  # a malformed size fails before the run directory exists
    check_spread(processes=spread.world_size if spread is not None else 1, trials=False, storage=None,
                 study_name=None, halving=bool(halving), nested=False)
    recipe, pool, fold_list, run_dir = _start(recipe, overrides, out, scheme=scheme, folds=folds, p=p,
                                              max_splits=max_splits)
    writer = MetricsWriter(run_dir) if run_dir is not None else None
    trackers = _trackers(recipe, run_dir, len(fold_list))
    try:
        run = run_cv(recipe, pool, fold_list, stop_share=stop_share, halving_eta=halving, max_memory=max_memory,
                     callbacks=[*([writer] if writer else []), *trackers, *(callbacks or [])], spread=spread,
                     side_by_side=side_by_side)
    except BaseException as err:
        if run_dir is not None:
            run_dir.finish("failed", message=f"{type(err).__name__}: {err}")
        for tracker in trackers:
            tracker.fail(f"{type(err).__name__}: {err}")
        raise
    metric = TASK_METRIC[pool.task]
    result = {
        "scheme": scheme,
        "folds": len(fold_list),
        "task": pool.task,
        "metric": metric,
        "dataset": pool.name,
        "sizes": _sizes(run, pool),
        "members": len(run.best_epoch),
        "candidates": candidate_table(run),
        "halving": run.halving,
        "per_member": _member_rows(run, metric),
        "memory": run.memory,
        "interrupted": run.interrupted,
        "train_time_s": round(run.train_time, 3),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    if spread is not None:
        result["processes"] = spread.world_size
    if run_dir is not None:
        run_dir.write_json("cv.json", result)
        plot_cv(result, run_dir.path / "cv.png")
        run_dir.finish("interrupted" if result["interrupted"] else "finished")
        result["run_dir"] = str(run_dir.path)
        for tracker in trackers:  # once the run directory is complete
            tracker.finish(run_dir.path, result, None)
    return result


def _trackers(recipe: Recipe, run_dir, folds: int) -> list:
    """MLflow / W&B listeners of a cross-validation or search job (member m: candidate m // folds, fold m % folds)."""
    if run_dir is None or not (recipe.track.mlflow or recipe.track.wandb):
        return []
    from ..track.trackers import make_trackers

    return make_trackers(recipe.track, run_dir.path, to_dict(recipe), folds=folds)


def _memory(runs: list[CVRun]) -> dict[str, Any]:
    """The memory budget, the largest estimate and how each population was chunked."""
    return {"budget": runs[0].memory["budget"] if runs else None,
            "needed": max((r.memory["needed"] or 0 for r in runs), default=0),
            "chunk_size": max((r.memory["chunk_size"] for r in runs), default=0),
            "chunks": [r.memory["chunks"] for r in runs],
            "side_by_side": max((r.memory["side_by_side"] for r in runs), default=1),
            "members": [r.memory["members"] for r in runs]}


def _nested(recipe: Recipe, pool: Pool, outer_k: int, choose, keys: list[str], *, scheme: str, folds: int, p: int,
            max_splits: int, stop_share: float, max_memory, spread: Spread | None = None) -> dict[str, Any]:
    """Nested cross-validation: per outer fold, the whole search on its training rows only, then the chosen
    candidate trained on those rows and scored once on the outer held-out rows (an unbiased estimate)."""
    metric = TASK_METRIC[pool.task]
    stratify = pool.task == "classification" and recipe.data.stratify
    outer = kfold(pool.y, k=outer_k, seed=recipe.data.seed, stratify=stratify)
    records = []
    for i, (train, held) in enumerate(outer):
        inner = pool.subset(train)
        inner_folds = make_folds(scheme, inner.y, folds=folds, seed=recipe.data.seed, val=recipe.data.val,
                                 stratify=stratify, p=p, max_splits=max_splits, groups=inner.groups)
        rows, _ = choose(inner, inner_folds)
        best = rows[best_index(rows, metric)]
        final = run_cv(candidate_recipe(recipe, best, keys), pool, [(train, held)], stop_share=stop_share,
                       max_memory=max_memory, spread=spread)
        records.append({"outer_fold": i, "chosen": {k: best[k] for k in keys}, "inner_candidates": len(rows),
                        "inner_cv_mean": best[f"cv_{metric}_mean"], "inner_cv_std": best[f"cv_{metric}_std"],
                        "outer": {q: final.scores["scored"][q][0] for q in ("loss", metric)},
                        "train_rows": len(train), "scored_rows": len(held)})
    scores = np.array([r["outer"][metric] for r in records])
    inner = np.array([r["inner_cv_mean"] for r in records])
    return {"outer_folds": outer_k, "outer_scheme": "stratified" if stratify else "kfold", "metric": metric,
            "mean": float(scores.mean()), "std": float(scores.std(ddof=1)) if outer_k > 1 else 0.0,
            "inner_best_mean": float(inner.mean()), "folds": records}


def search(
    recipe: Recipe | dict | str | Path | None = None,
    *,
    grid: list[str] | dict[str, list] | None = None,
    trials: int | None = None,
    space: list[str] | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    batch: int = BATCH,
    nested: int | None = None,
    scheme: str = "kfold",
    folds: int = 10,
    p: int = 2,
    max_splits: int = MAX_SPLITS,
    stop_share: float = STOP_SHARE,
    halving: int | None = None,
    refit: bool = True,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    callbacks=None,
    max_memory: str | int | None = None,
    spread: Spread | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    heartbeat: int | None = None,
    side_by_side: int | None = None,
) -> dict[str, Any]:
    """Grid search (`grid`) or Optuna trials (`trials` over `space`): every candidate cross-validated (numeric
    values as members), the best refit and tested once; `nested` K adds a nested-CV estimate over K outer folds.

    `storage` (an Optuna storage URL, with `study_name`) shares the trials' study with other processes and
    machines: `trials` is then the study's total, and the table holds every finished trial of the study;
    `heartbeat` (seconds, database storages; default 60, 0: none) lets the study tell a dead process's trials.
    `side_by_side`: a grid's populations train as up to this many parts side by side on the CPU (`cross_validate`).
    `spread` (a distributed job, `ranks.py`): a grid's chunks are shared out over the ranks (the result is the
    one-process search's: docs/scaling.md says when bit for bit); trials need a `storage`, each rank running trials of the shared study. Give
    `out` on the main rank only: it alone refits and writes."""
    from ..api import fit

    started = time.perf_counter()
    if (grid is None) == (trials is None):
        raise ValueError("search: expected either a grid (--grid) or a number of trials (--trials), "
                         f"got {'both' if grid is not None else 'neither'}")
    if trials is not None and halving:
        raise ValueError("search: --halving applies to --grid; trials are stopped early by Optuna's pruner (--pruner)")
    if nested is not None and nested < 2:
        raise ValueError(f"--nested: expected at least 2 outer folds, got {nested}")
    if trials is None and space:
        raise ValueError("search: --space goes with --trials; a grid is given with --grid")
    check_spread(processes=spread.world_size if spread is not None else 1,
                 trials=trials is not None, storage=storage, study_name=study_name, heartbeat=heartbeat,
                 halving=bool(halving), nested=nested is not None)
    memory_budget(max_memory)
    recipe = load_recipe(recipe, overrides)  # _start refuses what folds cannot do yet, before any file
    if trials is None:
        axes = parse_grid(grid) if isinstance(grid, list) else dict(grid)
        keys = list(axes)
        for key, values in axes.items():  # a key or value the recipe refuses, before any file is written
            for value in values:
                refuse_in_folds(candidate_recipe(recipe, {key: value}, {key: [value]}))
    else:
        dims = parse_space(space or [], recipe)
        keys = [d.key for d in dims]
        lookup(SAMPLERS, sampler, "sampler")
        lookup(PRUNERS, pruner, "pruner")
        if storage is not None:  # a URL Optuna cannot open fails before any file of the run is written
            if spread is not None and not spread.is_main:
                spread.barrier()  # the main rank creates the storage's tables first: two at once collide
            open_storage(storage)
            if spread is not None and spread.is_main:
                spread.barrier()
    recipe, pool, fold_list, run_dir = _start(recipe, None, out, scheme=scheme, folds=folds, p=p,
                                              max_splits=max_splits, keys=keys)
    studies = []
    trackers = _trackers(recipe, run_dir, len(fold_list))  # every population, chunk and trial batch a segment
    listeners = [*trackers, *(callbacks or [])]

    def choose(pool_: Pool, folds_: list) -> tuple[list[dict], list[CVRun]]:
        if trials is None:
            return run_search(recipe, axes, pool_, folds_, stop_share=stop_share, halving_eta=halving,
                              callbacks=listeners, max_memory=max_memory, spread=spread, side_by_side=side_by_side)
        rows_, runs_, study = run_trials(recipe, dims, pool_, folds_, trials=trials, batch=batch, sampler=sampler,
                                         pruner=pruner, seed=member_seeds(recipe)[0], stop_share=stop_share,
                                         callbacks=listeners, max_memory=max_memory, storage=storage,
                                         study_name=study_name, heartbeat=heartbeat)
        studies.append(study)
        if storage is not None:  # the study's finished trials, this process's and the others'
            if spread is not None:
                spread.barrier()  # every rank's trials told before the main rank reads them
            rows_ = study_rows(study, rows_)
            if not rows_:
                raise StorageError(f"--storage {redact(storage)}: the study {study.study_name!r} already holds "
                                   f"{len(study.trials)} trials (--trials {trials} counts the study's trials) and "
                                   f"none has finished: other processes are running them; expected a larger "
                                   f"--trials to add trials of this process")
        return rows_, runs_

    try:
        rows, runs = choose(pool, fold_list)
        metric = TASK_METRIC[pool.task]
        best = best_index(rows, metric)
        result: dict[str, Any] = {
            "scheme": scheme,
            "folds": len(fold_list),
            "task": pool.task,
            "metric": metric,
            "dataset": pool.name,
            "grid": {k: list(v) for k, v in axes.items()} if trials is None else None,
            "sizes": _sizes(runs[0], pool) if runs else None,
            "populations": len(runs),
            "members": sum(len(r.best_epoch) for r in runs),
            "memory": _memory(runs),
            "halving": [r.halving for r in runs] if halving else None,
            "cv_train_time_s": round(sum(r.train_time for r in runs), 3),
            "member_epochs": sum(sum(r.epochs) for r in runs),
            "candidates": rows,
            "best": rows[best],
        }
        if spread is not None:
            result["processes"] = spread.world_size
        if trials is not None:
            result["trials"] = {"count": trials, "batch": batch, "sampler": sampler, "pruner": pruner,
                                "seed": member_seeds(recipe)[0],
                                "space": {d.key: repr(d.distribution) for d in dims},
                                "pruned": sum(r["pruned"] for r in rows),
                                "failed": sum(not math.isfinite(r[f"cv_{metric}_mean"]) for r in rows),
                                "member_epochs": sum(sum(r.epochs) for r in runs),
                                "member_epochs_without_pruning": len(rows) * len(fold_list) * recipe.train.epochs}
            if storage is not None:  # the member-epochs are this process's; the table is the study's
                own = sum(r["population"] is not None for r in rows)
                result["trials"].update(storage=redact(storage), study=studies[0].study_name, this_process=own,
                                        member_epochs_without_pruning=own * len(fold_list) * recipe.train.epochs)
        if nested is not None:
            result["nested"] = _nested(recipe, pool, nested, choose, keys, scheme=scheme, folds=folds, p=p,
                                       max_splits=max_splits, stop_share=stop_share, max_memory=max_memory,
                                       spread=spread)
        if refit and (spread is None or spread.is_main):  # the best candidate on all the pool's rows (holdout for early stopping); the test split once
            refit_out = run_dir.path / "refit" if run_dir is not None else None
            with this_rank_only():  # under torchrun the refit is this process's alone, not a data-parallel fit
                final = fit(candidate_recipe(recipe, rows[best], keys), out=refit_out)
            result["refit"] = {k: final.summary.get(k) for k in ("train", "val", "test", "best_epoch", "epochs_run")}
        result["wall_time_s"] = round(time.perf_counter() - started, 3)
    except BaseException as err:
        if run_dir is not None:
            run_dir.finish("failed", message=f"{type(err).__name__}: {err}")
        for tracker in trackers:
            tracker.fail(f"{type(err).__name__}: {err}")
        raise
    if run_dir is not None:
        run_dir.write_json("search.json", result)
        numeric = [k for k in keys if all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in rows)]
        if len(keys) == 1 and numeric and trials is None:
            plot_path(rows, numeric[0], metric, run_dir.path / "path.png")
        run_dir.finish("finished")
        result["run_dir"] = str(run_dir.path)
        for tracker in trackers:
            tracker.finish(run_dir.path, {}, None)  # search.json and path.png as artifacts; scores are per fold
    return result
