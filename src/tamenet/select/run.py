"""`cross_validate` and `search`: model selection jobs that write a run directory, one library call each."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import Recipe, to_dict
from ..recipes import load_recipe
from ..track import RunDir
from ..train import TASK_METRIC
from .cv import STOP_SHARE, CVRun, candidate_table, make_pool, run_cv
from .plots import plot_cv, plot_path
from .search import best_index, candidate_recipe, parse_grid, run_search
from .splits import MAX_SPLITS, make_folds


def _start(source, overrides, out, *, scheme: str, folds: int, p: int, max_splits: int):
    """The checked recipe, its pool (test split set aside), the folds, and the run directory (or None)."""
    recipe = load_recipe(source, overrides)
    pool = make_pool(recipe)
    stratify = pool.task == "classification" and recipe.data.stratify
    fold_list = make_folds(scheme, pool.y, folds=folds, seed=recipe.data.seed, val=recipe.data.val,
                           stratify=stratify, p=p, max_splits=max_splits)
    run_dir = RunDir(out, tensorboard=False) if out is not None else None
    if run_dir is not None:
        run_dir.write_recipe(to_dict(recipe))
    return recipe, pool, fold_list, run_dir


def _sizes(run: CVRun, pool) -> dict[str, Any]:
    return {"pool": len(pool.y), "test_set_aside": pool.test_rows, "fit": run.rows.fit_sizes[0],
            "stop": run.rows.stop_sizes[0], "scored": sorted(set(run.rows.scored_sizes))}


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
    scheme: str = "kfold",
    folds: int = 10,
    p: int = 2,
    max_splits: int = MAX_SPLITS,
    stop_share: float = STOP_SHARE,
    halving: int | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    callbacks=None,
) -> dict[str, Any]:
    """Cross-validate the recipe (every per-member list a candidate) with all folds trained as one population."""
    started = time.perf_counter()
    recipe, pool, fold_list, run_dir = _start(recipe, overrides, out, scheme=scheme, folds=folds, p=p,
                                              max_splits=max_splits)
    writer = (lambda record, trainer: run_dir.log_epoch(record.rows)) if run_dir is not None else None
    try:
        run = run_cv(recipe, pool, fold_list, stop_share=stop_share, halving_eta=halving, callbacks=[*([writer] if writer else []), *(callbacks or [])])
    except BaseException as err:
        if run_dir is not None:
            run_dir.finish("failed", message=f"{type(err).__name__}: {err}")
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
        "interrupted": run.trainer.state.interrupted,
        "train_time_s": round(run.trainer.state.wall_time, 3),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    if run_dir is not None:
        run_dir.write_json("cv.json", result)
        plot_cv(result, run_dir.path / "cv.png")
        run_dir.finish("interrupted" if result["interrupted"] else "finished")
        result["run_dir"] = str(run_dir.path)
    return result


def search(
    recipe: Recipe | dict | str | Path | None = None,
    *,
    grid: list[str] | dict[str, list],
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
) -> dict[str, Any]:
    """Grid search: every candidate cross-validated (numeric axes as members), the best refit and tested once."""
    from ..api import fit

    started = time.perf_counter()
    axes = parse_grid(grid) if isinstance(grid, list) else dict(grid)
    recipe, pool, fold_list, run_dir = _start(recipe, overrides, out, scheme=scheme, folds=folds, p=p,
                                              max_splits=max_splits)
    try:
        rows, runs = run_search(recipe, axes, pool, fold_list, stop_share=stop_share, halving_eta=halving,
                                callbacks=callbacks)
        metric = TASK_METRIC[pool.task]
        best = best_index(rows, metric)
        result: dict[str, Any] = {
            "scheme": scheme,
            "folds": len(fold_list),
            "task": pool.task,
            "metric": metric,
            "dataset": pool.name,
            "grid": {k: list(v) for k, v in axes.items()},
            "sizes": _sizes(runs[0], pool),
            "populations": len(runs),
            "members": sum(len(r.best_epoch) for r in runs),
            "halving": [r.halving for r in runs] if halving else None,
            "cv_train_time_s": round(sum(r.trainer.state.wall_time for r in runs), 3),
            "candidates": rows,
            "best": rows[best],
        }
        if refit:  # the best candidate on all the pool's rows (holdout for early stopping); the test split once
            refit_out = run_dir.path / "refit" if run_dir is not None else None
            final = fit(candidate_recipe(recipe, rows[best], axes), out=refit_out)
            result["refit"] = {k: final.summary.get(k) for k in ("train", "val", "test", "best_epoch", "epochs_run")}
        result["wall_time_s"] = round(time.perf_counter() - started, 3)
    except BaseException as err:
        if run_dir is not None:
            run_dir.finish("failed", message=f"{type(err).__name__}: {err}")
        raise
    if run_dir is not None:
        run_dir.write_json("search.json", result)
        numeric = [k for k in axes if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axes[k])]
        if len(axes) == 1 and numeric:
            plot_path(rows, numeric[0], metric, run_dir.path / "path.png")
        run_dir.finish("finished")
        result["run_dir"] = str(run_dir.path)
    return result

