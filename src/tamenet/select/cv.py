"""Cross-validation as one population (B2, X1): every (candidate, fold) pair is a member.

Nothing leaks from the rows a fold scores: the scaler is fitted on the fold's training rows only,
and early stopping watches a stopping set carved from the fold's training rows, never the scored
rows. The test split of the recipe is set aside before any fold is drawn and is not touched here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..config import Recipe, RecipeError, parse, per_member_values, population_size, to_dict
from ..data import Dataset, Standardizer, load_dataset, split_indices
from ..models import build_model
from ..recipes import check_recipe
from ..train import TASK_METRIC, EpochRecord, Trainer, evaluate, member_seeds
from ..train.hyper import member_table
from ..train.member_data import MemberData
from .halving import Halving, halving_rungs
from .splits import Fold

STOP_SHARE = 0.2
"""Share of each fold's training rows held out to decide early stopping (never the scored rows)."""


@dataclass
class Pool:
    """The rows cross-validation may use: everything but the recipe's test split, raw (unscaled)."""

    X: np.ndarray
    y: np.ndarray
    task: str
    n_outputs: int
    name: str
    test_rows: int
    image_shape: tuple[int, ...] | None = None  # a row's shape as a signal or image, for convolutional models


def make_pool(recipe: Recipe, *, X: np.ndarray | None = None, y: np.ndarray | None = None) -> Pool:
    """Load the recipe's data and set its test split aside; the rest is the pool that folds split."""
    from ..data import dataset_from_arrays

    cfg = recipe.data
    data: Dataset = load_dataset(cfg) if X is None else dataset_from_arrays(X, y, task=cfg.task, name="arrays")
    train, val, test = split_indices(
        data.y, data.task, val=cfg.val, test=cfg.test, seed=cfg.seed, stratify=cfg.stratify, classes=data.classes
    )
    rows = np.sort(np.concatenate([train, val]))
    n_out = len(data.classes) if data.task == "classification" else 1
    return Pool(data.X[rows], data.y[rows], data.task, n_out, data.name, len(test), data.image_shape)


def expand_members(recipe: Recipe, repeat: int) -> Recipe:
    """The recipe with every per-member list repeated `repeat` times element-wise: [a, b] -> [a, a, b, b].

    Member c * repeat + f is candidate c on fold f.
    """
    raw = to_dict(recipe)
    candidates = population_size(recipe)
    for path, value in per_member_values(recipe).items():
        if isinstance(value, list) and len(value) == candidates and path != "seed":
            _set_path(raw, path, [v for v in value for _ in range(repeat)])
    raw["seed"] = [s for s in member_seeds(recipe) for _ in range(repeat)]  # M = candidates x repeat
    return check_recipe(parse(Recipe, raw))


def _set_path(raw: dict, path: str, value: Any) -> None:
    parts = path.replace("[", ".").replace("]", "").split(".")
    node = raw
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def _stop_split(train: np.ndarray, y: np.ndarray, task: str, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, stopping rows) of a fold's training rows; the stopping rows are never fitted.

    A bootstrap sample repeats rows: the stopping set is drawn from its distinct rows, every copy
    of those rows leaves the fit set, and the fit set is topped up by drawing again (with
    replacement) from the remaining rows, so every fold fits on the same number of rows.
    """
    if share <= 0:
        return train, train[:0]
    distinct = np.unique(train)
    n_stop = max(1, int(round(share * len(distinct))))
    labels = y[distinct] if task == "classification" else None
    try:
        kept, stop_rows = train_test_split(distinct, test_size=n_stop, random_state=seed, stratify=labels)
    except ValueError:  # a class too small to stratify this split: fall back to a plain random split
        kept, stop_rows = train_test_split(distinct, test_size=n_stop, random_state=seed)
    if len(distinct) == len(train):
        return np.sort(kept), np.sort(stop_rows)
    fit_rows = train[~np.isin(train, stop_rows)]
    size = len(train) - int(round(share * len(train)))
    rng = np.random.default_rng(seed)
    extra = rng.choice(kept, size=max(size - len(fit_rows), 0), replace=True)
    return np.sort(np.concatenate([fit_rows, extra])[:size]), np.sort(stop_rows)


@dataclass
class FoldRows:
    """MemberData for training (train rows and stopping set) and the scored rows of every member."""

    data: MemberData
    scored: torch.Tensor  # [M, S] rows, padded
    scored_weight: torch.Tensor  # [M, S]
    fit_sizes: list[int]
    stop_sizes: list[int]
    scored_sizes: list[int]


def fold_rows(
    pool: Pool, folds: list[Fold], *, candidates: int, standardize: bool, stop_share: float, seed: int
) -> FoldRows:
    """Per-fold scaled copies of the pool and the rows of member c * K + f (candidate c, fold f)."""
    k = len(folds)
    xs, ys, stds, fits, stops = [], [], [], [], []
    for f, (train, _) in enumerate(folds):
        scaler = Standardizer.fit(pool.X[train]) if standardize else None
        xs.append(pool.X if scaler is None else scaler.transform(pool.X))
        if pool.task == "regression":
            target = Standardizer.fit(pool.y[train]) if standardize else None
            ys.append(pool.y if target is None else target.transform(pool.y))
            stds.append(float(np.asarray(target.std).reshape(-1)[0]) if target is not None else 1.0)
        else:
            ys.append(pool.y)
            stds.append(1.0)
        fit_rows, stop_rows = _stop_split(train, pool.y, pool.task, stop_share, seed)
        fits.append(fit_rows)
        stops.append(stop_rows)
    if len({len(r) for r in fits}) != 1:
        raise ValueError(f"every fold must train on the same number of rows, got {sorted({len(r) for r in fits})}")
    y_dtype = torch.int64 if pool.task == "classification" else torch.float32
    members = candidates * k
    fold_of = torch.tensor([m % k for m in range(members)])
    stop, stop_w = _padded([stops[f] for f in fold_of.tolist()])
    scored, scored_w = _padded([folds[f][1] for f in fold_of.tolist()])
    data = MemberData(
        task=pool.task,
        X=torch.from_numpy(np.stack(xs).astype(np.float32)),
        y=torch.from_numpy(np.stack(ys)).to(y_dtype),
        fold=fold_of,
        train=torch.from_numpy(np.stack([fits[f] for f in fold_of.tolist()])),
        val=stop,
        val_weight=stop_w,
        target_std=torch.tensor([stds[f] for f in fold_of.tolist()], dtype=torch.float64),
    )
    return FoldRows(data, scored, scored_w, [len(r) for r in fits], [len(r) for r in stops],
                    [len(s) for _, s in folds])


def _padded(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    index = torch.zeros(len(rows), width, dtype=torch.long)
    weight = torch.zeros(len(rows), width)
    for m, r in enumerate(rows):
        index[m, : len(r)] = torch.from_numpy(np.asarray(r, dtype=np.int64))
        weight[m, : len(r)] = 1.0
    return index, weight


@dataclass
class CVRun:
    """A trained cross-validation population and its per-member results (indexed by the original member number)."""

    trainer: Trainer
    rows: FoldRows
    folds: list[Fold]
    candidates: int
    scores: dict[str, dict[str, list[float]]]  # split ("fit", "scored") -> {"loss": [M], metric: [M]}
    best_epoch: list[int]
    diverged_at: list[int | None]
    dropped_at: list[int | None]  # the halving rung that removed the member, if any
    stopped: list[bool]  # stopped early
    halving: dict[str, Any] | None
    wall_time: float


class _Scores:
    """Per original member: fit and scored loss/metric, best epoch, divergence; filled as members finish."""

    def __init__(self, rows: FoldRows, members: int, metric: str) -> None:
        self.rows, self.metric = rows, metric
        self.values = {split: {q: [math.nan] * members for q in ("loss", metric)} for split in ("fit", "scored")}
        self.best_epoch: list[int] = [0] * members
        self.diverged_at: list[int | None] = [None] * members
        self.dropped_at: list[int | None] = [None] * members
        self.stopped: list[bool] = [False] * members

    @torch.no_grad()
    def record(self, trainer: Trainer, indices: list[int], *, restore: bool) -> None:
        """Score these members (current indices) with their best weights when `restore`; the model is left as it was."""
        saved = {k: v.clone() for k, v in trainer.model.state_dict().items()} if restore else None
        if restore:
            trainer.restore_best()
        data, ids = trainer.data, [trainer.member_ids[i] for i in indices]
        original = torch.tensor(trainer.member_ids)
        copy = data.fold.unsqueeze(1)
        splits = {"fit": (data.train.expand(trainer.members, -1), None),
                  "scored": (self.rows.scored[original], self.rows.scored_weight[original])}
        for name, (index, weight) in splits.items():
            loss, value = evaluate(trainer.model, data.X[copy, index], data.y[copy, index], data.task,
                                   target_std=data.target_std, weight=weight)
            for i, member in zip(indices, ids):
                self.values[name]["loss"][member] = float(loss[i])
                self.values[name][self.metric][member] = float(value[i])
        for i, member in zip(indices, ids):
            self.best_epoch[member] = trainer.state.best_epoch[i]
            self.diverged_at[member] = trainer.state.diverged_at[i]
            self.stopped[member] = trainer.state.stopped[i]
        if saved is not None:
            trainer.model.load_state_dict(saved)


def run_cv(
    recipe: Recipe,
    pool: Pool,
    folds: list[Fold],
    *,
    stop_share: float = STOP_SHARE,
    halving_eta: int | None = None,
    callbacks: list[Callable[[EpochRecord, Trainer], None]] | None = None,
) -> CVRun:
    """Train every candidate of `recipe` on every fold as one population, then score the held-out rows once.

    With `halving_eta`, successive halving drops the worse candidates at rungs (see `halving.py`).
    """
    started = time.perf_counter()
    candidates = population_size(recipe)
    es = recipe.train.early_stopping
    needs_stop = es.patience is not None or es.restore_best
    rows = fold_rows(
        pool, folds, candidates=candidates, standardize=recipe.data.standardize,
        stop_share=stop_share if needs_stop else 0.0, seed=recipe.data.seed,
    )
    if needs_stop and not rows.data.has_val:
        raise RecipeError("early stopping needs a stopping set: use a stop share > 0")
    expanded = expand_members(recipe, len(folds))
    seeds = member_seeds(expanded)
    torch.manual_seed(seeds[0])
    model = build_model(expanded.model, n_in=pool.X.shape[1], n_out=pool.n_outputs, seeds=seeds,
                        input_shape=pool.image_shape)
    members = model.members
    results = _Scores(rows, members, TASK_METRIC[pool.task])
    halving = None
    if halving_eta is not None:
        def on_drop(trainer: Trainer, indices: list[int]) -> None:
            results.record(trainer, indices, restore=expanded.train.early_stopping.restore_best)
            for i in indices:
                results.dropped_at[trainer.member_ids[i]] = trainer.state.epoch

        rungs = halving_rungs(expanded.train.epochs, candidates, halving_eta)
        halving = Halving(rungs, len(folds), halving_eta, on_drop)
    def prune(record: EpochRecord, trainer: Trainer) -> None:
        """Members that stopped early or diverged leave the population: they cost no more compute."""
        state = trainer.state
        done = [i for i in range(trainer.members) if state.stopped[i] or state.diverged_at[i] is not None]
        if done and len(done) < trainer.members:
            results.record(trainer, done, restore=expanded.train.early_stopping.restore_best)
            trainer.keep_members([i for i in range(trainer.members) if i not in done])

    trainer = Trainer(model, rows.data, expanded,
                      callbacks=[*(callbacks or []), *([halving] if halving else []), prune])
    trainer.run()  # restores the best weights of the members still there
    results.record(trainer, list(range(trainer.members)), restore=False)
    report = None
    if halving is not None:
        full = members * trainer.state.epoch
        report = {"eta": halving_eta, "rungs": halving.rungs, "steps": halving.dropped,
                  "member_epochs": halving.member_epochs, "member_epochs_without_halving": full,
                  "compute_saved": 1.0 - halving.member_epochs / full if full else 0.0}
    return CVRun(trainer, rows, folds, candidates, results.values, results.best_epoch, results.diverged_at,
                 results.dropped_at, results.stopped, report, time.perf_counter() - started)


def candidate_table(run: CVRun) -> list[dict[str, Any]]:
    """Per candidate: its numbers, scored loss and metric per fold, mean and standard deviation over folds."""
    k = len(run.folds)
    metric = TASK_METRIC[run.rows.data.task]
    hyper = member_table(run.trainer.recipe)
    out = []
    for c in range(run.candidates):
        members = range(c * k, (c + 1) * k)
        entry: dict[str, Any] = {"candidate": c, **{key: v for key, v in hyper[c * k].items()}}
        for split in ("fit", "scored"):
            for quantity in ("loss", metric):
                values = np.array([run.scores[split][quantity][m] for m in members])
                label = "train" if split == "fit" else "cv"
                entry[f"{label}_{quantity}_mean"] = float(values.mean())
                entry[f"{label}_{quantity}_std"] = float(values.std(ddof=1)) if k > 1 else 0.0
                if split == "scored":
                    entry[f"cv_{quantity}_folds"] = values.tolist()
        entry["best_epochs"] = [run.best_epoch[m] for m in members]
        entry["diverged_folds"] = [m - c * k for m in members if run.diverged_at[m] is not None]
        entry["dropped_at_epoch"] = run.dropped_at[c * k]
        out.append(entry)
    return out
