"""Cross-validation as one population (B2, X1): every (candidate, fold) pair is a member.

Nothing leaks from the rows a fold scores: the scaler is fitted on the fold's training rows only,
and early stopping watches a stopping set carved from the fold's training rows, never the scored
rows. The test split of the recipe is set aside before any fold is drawn and is not touched here.
A population larger than the memory budget trains in chunks of members, one after another, with
the same results (see `memory.py`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..config import Recipe, RecipeError, population_size
from ..data import Standardizer, assign_rows
from ..models import build_model
from ..recipes import expand_members, select_members
from ..train import TASK_METRIC, EpochRecord, Trainer, evaluate, member_seeds
from ..train.hyper import member_table
from ..train.member_data import MemberData
from ..train.side_by_side import side_by_side_workers, split_members, train_side_by_side
from .halving import Halving, halving_rungs
from .memory import chunk_size, estimate_memory, memory_budget
from .options import STOP_SHARE
from .ranks import Spread, absorb, chunk_part, chunks_for_rank, spread_chunks
from .splits import Fold



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
    groups: np.ndarray | None = None  # each row's group (data.groups): folds keep whole groups together
    texts: list[str] | None = None  # text data: each row's string; a fold's features are its own vocabulary's
    audio: Any = None  # audio augmentation: X holds waveforms, this the clean log-mel features (`modal_folds`)

    def subset(self, rows: np.ndarray) -> "Pool":
        """The pool of these rows only (an outer fold's training rows in nested cross-validation), all else kept."""
        groups = None if self.groups is None else self.groups[rows]
        texts = None if self.texts is None else [self.texts[i] for i in rows]
        audio = None if self.audio is None else dataclasses.replace(self.audio, features=self.audio.features[rows])
        return dataclasses.replace(self, X=self.X[rows], y=self.y[rows], groups=groups, texts=texts, audio=audio)


def make_pool(recipe: Recipe, *, X: np.ndarray | None = None, y: np.ndarray | None = None,
              waveforms: bool = False) -> Pool:
    """Load the recipe's data and set its test split aside; the rest is the pool that folds split.

    An audio pool holds waveforms (and its clean log-mel features beside them) when the recipe's
    ``augment.audio`` is on or `waveforms` says some candidate's will be (a search over its strengths).

    With a predefined split (``data.split``) the pool is the rows marked train or val and the rows
    marked test stay aside, for the refit's one test; with ``data.test: 0`` nothing is set aside.
    """
    from ..augment.config_text_audio import modal_augmentation

    data, parts = assign_rows(recipe.data, X=X, y=y)
    rows = np.sort(np.concatenate([parts.train, parts.val]))
    texts = audio = None
    X_pool = None
    if data.featurize is not None:  # text: each fold featurizes over its own training rows' vocabulary
        texts = [data.raw.texts[i] for i in rows]
        data = data.featurize(rows)  # only its width is used: the pool's vocabulary bounds every fold's
        X_pool = np.zeros((len(rows), data.X.shape[1]), dtype=np.float32)
    elif data.raw is not None and hasattr(data.raw, "waves") and (waveforms or modal_augmentation(recipe) == "audio"):
        # waveforms; the log-mel front end is in the model
        from .modal_folds import AudioPool

        audio = AudioPool(data.X[rows], data.raw.rate, data.raw)
        X_pool = np.ascontiguousarray(data.raw.waves[rows], dtype=np.float32)
    n_out = len(data.classes) if data.task == "classification" else (data.y.shape[1] if data.task == "dense" else 1)
    groups = None if data.groups is None else data.groups[rows]
    return Pool(data.X[rows] if X_pool is None else X_pool, data.y[rows], data.task, n_out, data.name,
                len(parts.test), data.image_shape, groups, texts, audio)


def _stop_split(train: np.ndarray, y: np.ndarray, task: str, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, stopping rows) of a fold's training rows; the stopping rows are never fitted.

    A bootstrap sample repeats rows: the stopping set is drawn from its distinct rows, every copy
    of those rows leaves the fit set, and the fit set is topped up by drawing again (with
    replacement) from the remaining rows, so every fold fits on the same number of rows.
    """
    from sklearn.model_selection import train_test_split  # imported on use: slow

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
    featurizers: list | None = None  # text: strings -> features per copy (that fold's vocabulary and scaler)


def fold_rows(
    pool: Pool, folds: list[Fold], *, candidates: int, standardize: bool, stop_share: float, seed: int,
    members: list[int] | None = None,
) -> FoldRows:
    """Per-fold scaled copies of the pool and the rows of member c * K + f (candidate c, fold f).

    `members` (default: all candidates x folds) names the members to hold, e.g. one chunk of them;
    only the folds they use get a scaled copy.
    """
    k = len(folds)
    members = list(range(candidates * k)) if members is None else list(members)
    used = sorted({m % k for m in members})
    xs, ys, stds, fits, stops, featurizers = [], [], [], {}, {}, []
    for f in used:
        train = folds[f][0]
        if pool.texts is not None:  # the vocabulary and scaler of this fold's training rows only
            from .modal_folds import fold_text_features

            features, featurize = fold_text_features(pool.texts, train, pool.X.shape[1], standardize)
            xs.append(features)
            featurizers.append(featurize)
        else:
            scaler = Standardizer.fit(pool.X[train]) if standardize and pool.audio is None else None
            xs.append(pool.X if scaler is None else scaler.transform(pool.X))
        if pool.task == "regression":
            target = Standardizer.fit(pool.y[train]) if standardize else None
            ys.append(pool.y if target is None else target.transform(pool.y))
            stds.append(float(np.asarray(target.std).reshape(-1)[0]) if target is not None else 1.0)
        else:
            ys.append(pool.y)
            stds.append(1.0)
        fits[f], stops[f] = _stop_split(train, pool.y, pool.task, stop_share, seed)
    if len({len(r) for r in fits.values()}) != 1:
        raise ValueError(f"every fold must train on the same number of rows, got {sorted({len(r) for r in fits.values()})}")
    y_dtype = torch.int64 if pool.task == "classification" else torch.float32
    fold_of = [m % k for m in members]
    copy = {f: i for i, f in enumerate(used)}
    one_copy = pool.audio is not None  # unscaled waveforms: every fold reads one copy (its front end standardizes)
    stop, stop_w = _padded([stops[f] for f in fold_of])
    scored, scored_w = _padded([folds[f][1] for f in fold_of])
    data = MemberData(
        task=pool.task,
        X=torch.from_numpy(np.stack(xs[:1] if one_copy else xs).astype(np.float32)),
        y=torch.from_numpy(np.stack(ys[:1] if one_copy else ys)).to(y_dtype),
        fold=torch.tensor([0 if one_copy else copy[f] for f in fold_of]),
        train=torch.from_numpy(np.stack([fits[f] for f in fold_of])),
        val=stop,
        val_weight=stop_w,
        target_std=torch.tensor([stds[copy[f]] for f in fold_of], dtype=torch.float64),
    )
    return FoldRows(data, scored, scored_w, [len(fits[f]) for f in used], [len(stops[f]) for f in used],
                    [len(folds[f][1]) for f in used], featurizers or None)


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
    """A trained cross-validation population and its per-member results (indexed by the original member number).

    A population too large for the memory budget trains as several chunks of members, one after
    another: `trainers` holds one trainer per chunk (`trainer` is the first; a chunk keeps only its
    history and loop state once done, its weights are freed), `history` all of them; a chunk another rank of a
    distributed search trained is a `ranks.RemoteChunk` (its members, history and loop state). On the CPU the
    parts of a chunk train side by side (`together` lists which; each part is a chunk here): use `history`
    and `scores`, not `trainer`, for the whole population.
    """

    trainers: list[Trainer]
    rows: FoldRows  # the first chunk's rows
    folds: list[Fold]
    candidates: int
    recipe: Recipe  # the expanded recipe: member c * K + f is candidate c on fold f
    scores: dict[str, dict[str, list[float]]]  # split ("fit", "scored") -> {"loss": [M], metric: [M]}
    best_epoch: list[int]
    diverged_at: list[int | None]
    dropped_at: list[int | None]  # the halving rung (or pruning epoch) that removed the member, if any
    stopped: list[bool]  # stopped early
    epochs: list[int]  # epochs the member trained
    halving: dict[str, Any] | None
    chunks: list[list[int]]  # the members of each chunk, in training order
    memory: dict[str, Any]  # the estimate, the budget and the chunk size
    wall_time: float
    together: list[list[int]] = dataclasses.field(default_factory=list)  # chunk numbers trained side by side

    @property
    def trainer(self) -> Trainer:
        return self.trainers[0]

    @property
    def chunk_size(self) -> int:
        return max(len(c) for c in self.chunks)

    @property
    def history(self) -> list[dict]:
        """Every chunk's metrics rows, ordered as one population would write them (epoch, then member)."""
        rows = [row for t in self.trainers for row in t.history]
        return rows if len(self.trainers) == 1 else sorted(rows, key=lambda r: (r["epoch"], r["member"]))

    @property
    def train_time(self) -> float:
        """Seconds of training: summed over chunks trained one after another, the longest of those side by side."""
        groups = self.together or [[i] for i in range(len(self.trainers))]
        trained = len(self.trainers)  # after Ctrl-C the groups not reached have no trainers (a group trains whole)
        return sum(max(self.trainers[i].state.wall_time for i in g) for g in groups if g[0] < trained)

    @property
    def interrupted(self) -> bool:
        return any(t.state.interrupted for t in self.trainers)


class _Scores:
    """Per original member: fit and scored loss/metric, best epoch, divergence; filled as members finish."""

    def __init__(self, members: int, metric: str) -> None:
        self.metric = metric
        self.members = members
        self.values = {split: {q: [math.nan] * members for q in ("loss", metric)} for split in ("fit", "scored")}
        self.best_epoch: list[int] = [0] * members
        self.diverged_at: list[int | None] = [None] * members
        self.dropped_at: list[int | None] = [None] * members
        self.stopped: list[bool] = [False] * members
        self.epochs: list[int] = [0] * members
        self.bound: dict[int, tuple[FoldRows, dict[int, int]]] = {}  # id(trainer) -> its chunk's rows, positions

    def rows_per_batch(self, features: int) -> int:
        """Scored rows per evaluation batch: `evaluate`'s own rule (about 2^21 activations per layer output) for
        the whole population, so that a chunk, or a population that members left, scores its rows in the same
        batches as the full population does (a batch's row count can change a matmul's bits)."""
        return max(32, (1 << 21) // (self.members * max(features, 256)))

    def bind(self, trainer: Trainer, rows: FoldRows, members: list[int]) -> None:
        """A chunk's trainer: its rows, and where each of its original members sits in them (several chunks
        may train at once, side by side)."""
        self.bound[id(trainer)] = (rows, {m: i for i, m in enumerate(members)})

    def _scored_rows(self, trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
        """The scored rows' indices and weights of the trainer's current members."""
        rows, position = self.bound[id(trainer)]
        local = torch.tensor([position[m] for m in trainer.member_ids])
        return rows.scored[local], rows.scored_weight[local]

    @torch.no_grad()
    def record(self, trainer: Trainer, indices: list[int], *, restore: bool) -> None:
        """Score these members (current indices) with their best weights when `restore`; the model is left as it was.

        A trainer that keeps no best weights (no restore_best) leaves a diverged member with the
        weights it diverged with: its scores are NaN (a failed fit, as scikit-learn's
        `error_score=nan`), and no population evaluation runs for it. With restore_best a diverged
        member is scored with its best epoch's weights (restored here, or by the loop at its end).
        """
        state = trainer.state
        failed = [i for i in indices if not trainer.keeps_best and state.diverged_at[i] is not None]
        for i in failed:
            for split in self.values.values():
                for values in split.values():
                    values[trainer.member_ids[i]] = math.nan
        self._keep_state(trainer, indices)
        indices = [i for i in indices if i not in failed]
        if not indices:
            return
        saved = {k: v.clone() for k, v in trainer.model.state_dict().items()} if restore else None
        if restore:
            trainer.restore_best()
        data, ids = trainer.data, [trainer.member_ids[i] for i in indices]
        copy = data.fold.unsqueeze(1)
        splits = {"fit": (data.train.expand(trainer.members, -1), None), "scored": self._scored_rows(trainer)}
        for name, (index, weight) in splits.items():
            loss, value = evaluate(trainer.model, data.X[copy, index], data.y[copy, index], data.task,
                                   target_std=data.target_std, weight=weight,
                                   batch_size=self.rows_per_batch(data.X.shape[-1]))
            for i, member in zip(indices, ids):
                self.values[name]["loss"][member] = float(loss[i])
                self.values[name][self.metric][member] = float(value[i])
        if saved is not None:
            trainer.model.load_state_dict(saved)

    def _keep_state(self, trainer: Trainer, indices: list[int]) -> None:
        for i in indices:
            member = trainer.member_ids[i]
            self.best_epoch[member] = trainer.state.best_epoch[i]
            self.diverged_at[member] = trainer.state.diverged_at[i]
            self.stopped[member] = trainer.state.stopped[i]
            self.epochs[member] = trainer.state.epoch

    @torch.no_grad()
    def scored_now(self, trainer: Trainer) -> list[float]:
        """Every current member's metric on its fold's scored rows with its current weights."""
        data = trainer.data
        scored, weight = self._scored_rows(trainer)
        _, value = evaluate(trainer.model, data.X[data.fold.unsqueeze(1), scored],
                            data.y[data.fold.unsqueeze(1), scored], data.task,
                            target_std=data.target_std, weight=weight,
                            batch_size=self.rows_per_batch(data.X.shape[-1]))
        return [float(v) for v in value]

    def rung_scores(self, trainer: Trainer) -> list[float]:
        """`scored_now`, signed so that lower is better (successive halving's ranking)."""
        sign = -1.0 if self.metric == "accuracy" else 1.0
        return [sign * v for v in self.scored_now(trainer)]


Leave = Callable[[EpochRecord, Trainer, "list[float] | None"], list[int]]
"""A callback that names the members (current indices) that leave the population after this epoch.

Its third argument is None when the population has a stopping set (the record's `val_` columns
monitor the members); without one, every member's metric on its fold's scored rows now, the score
the search selects on (the stopping set's place, as in successive halving). A callback always gets
all three (`tamenet.select.trials.TrialReporter` is one).
"""


def run_cv(
    recipe: Recipe,
    pool: Pool,
    folds: list[Fold],
    *,
    stop_share: float = STOP_SHARE,
    halving_eta: int | None = None,
    callbacks: list[Callable[[EpochRecord, Trainer], None]] | None = None,
    leave: Leave | None = None,
    max_memory: str | int | None = None,
    spread: Spread | None = None,
    side_by_side: int | None = None,
) -> CVRun:
    """Train every candidate of `recipe` on every fold as one population, then score the held-out rows once.

    With `halving_eta`, successive halving drops the worse candidates at rungs (see `halving.py`);
    `leave` names members to drop after an epoch (e.g. Optuna's pruner); both drop whole candidates.
    When the population does not fit in `max_memory` (see `memory.memory_budget`), its members
    train in chunks one after another (whole candidates when halving or `leave` compares them).
    Chunked results equal unchunked ones, except that successive halving then ranks candidates
    within their chunk (each chunk is its own halving run, with rungs for its own candidate count).
    With `spread` (the ranks of a distributed job, see `ranks.py`) each rank trains its round-robin share of
    the chunks and every rank ends with the whole population's results.

    On the CPU a chunk trains as `side_by_side` parts at once, one thread each (`train.side_by_side`; None: one
    per intra-op thread, `torch.get_num_threads()`, with at least 16 members a part; 1: one population), unless candidates are compared
    while they train (halving, `leave`), the search is spread over ranks or text augmentation rewrites rows.
    The parts' numbers are the ones the whole chunk gives.
    """
    started = time.perf_counter()
    if spread is not None and halving_eta is not None:
        raise ValueError("successive halving over several processes would rank candidates within each process's "
                         "chunk only; expected --halving without --nproc")
    candidates, k = population_size(recipe), len(folds)
    es = recipe.train.early_stopping
    needs_stop = es.patience is not None or es.restore_best
    share = stop_share if needs_stop else 0.0
    expanded = expand_members(recipe, k)
    members = candidates * k
    budget = memory_budget(max_memory)
    group = k if halving_eta is not None or leave is not None else 1
    estimate, size = None, members
    parts = _side_by_side_parts(expanded, members, side_by_side, group=group, spread=spread)
    if members > group:  # a population that could be split: price it (a population of one trains as it is)
        n_train = len(folds[0][0])
        n_stop = int(round(share * len(np.unique(folds[0][0]))))
        estimate = estimate_memory(expanded, n_in=pool.X.shape[1], n_out=pool.n_outputs, n_pool=len(pool.y),
                                   n_fit=n_train - n_stop, n_stop=n_stop, n_scored=max(len(s) for _, s in folds),
                                   task=pool.task, input_shape=pool.image_shape)
        size = chunk_size(estimate, members=members, group=group, copies=k * parts, budget=budget)
    chunks = [list(range(start, min(start + size, members))) for start in range(0, members, size)]
    if spread is not None:  # at least one chunk per rank where the candidates allow
        chunks = spread_chunks(members, size, group=group, world=spread.world_size)
        size = max(len(c) for c in chunks)
    if side_by_side is None:  # the default split: at least MIN_MEMBERS_PER_WORKER members in a part of any chunk
        parts = min(parts, side_by_side_workers(max(len(c) for c in chunks)))
    groups = [split_members(c, parts) for c in chunks]  # each chunk's parts train side by side
    chunks, first = [part for g in groups for part in g], 0
    together = []  # the chunk numbers of each group
    for g in groups:
        together.append(list(range(first, first + len(g))))
        first += len(g)
    mine = set(chunks_for_rank(len(chunks), spread.rank, spread.world_size)) if spread is not None else None
    results = _Scores(members, TASK_METRIC[pool.task])
    trainers, first_rows, reports, packed = [None] * len(chunks), None, [], []
    for numbers in together:
        numbers = [i for i in numbers if mine is None or i in mine]  # another rank's chunk: filled in below
        built = [_chunk_trainer(expanded, chunks[i], pool, folds, share=share, results=results,
                                halving_eta=halving_eta, callbacks=callbacks, leave=leave) for i in numbers]
        train_side_by_side([trainer for trainer, _, _ in built], workers=len(built))
        for i, (trainer, rows, halving) in zip(numbers, built):
            _score_chunk(trainer, results)
            trainers[i] = trainer
            first_rows = first_rows or rows
            if len(chunks) > 1:
                _release(trainer)
            if halving is not None:
                reports.append((halving, len(chunks[i]) * trainer.state.epoch))
            if spread is not None:
                packed.append(chunk_part(results, trainer, chunks[i], spread.rank))
        if spread is None and any(trainer.state.interrupted for trainer, _, _ in built):
            trainers = [t for t in trainers if t is not None]
            break
    if spread is not None:  # every rank: the others' chunks, in chunk order
        for part in spread.exchange(packed):
            if part["rank"] != spread.rank:
                index = chunks.index(part["members"])
                trainers[index] = absorb(results, part)
                for callback in callbacks or []:
                    if hasattr(callback, "remote_rows"):
                        callback.remote_rows(trainers[index].history)
        if first_rows is None:  # this rank trained no chunk: the first chunk's rows, for the sizes and the task
            first_rows = fold_rows(pool, folds, candidates=0, members=chunks[0], standardize=expanded.data.standardize,
                                   stop_share=share, seed=expanded.data.seed)
    report = None
    if halving_eta is not None:
        done = sum(h.member_epochs for h, _ in reports)
        full = sum(f for _, f in reports)
        report = {"eta": halving_eta, "rungs": sorted({r for h, _ in reports for r in h.rungs}),
                  "steps": [{**step, "chunk": i} if len(reports) > 1 else step
                            for i, (h, _) in enumerate(reports) for step in h.dropped],
                  "member_epochs": done, "member_epochs_without_halving": full,
                  "compute_saved": 1.0 - done / full if full else 0.0}
    memory = {"budget": budget, "estimate": estimate.as_dict() if estimate else None, "members": members,
              "needed": estimate.total(members, k) if estimate else None, "chunk_size": size, "chunks": len(groups),
              "side_by_side": max(len(g) for g in together)}
    return CVRun(trainers, first_rows, folds, candidates, expanded, results.values, results.best_epoch,
                 results.diverged_at, results.dropped_at, results.stopped, results.epochs, report, chunks, memory,
                 time.perf_counter() - started, together)


def _side_by_side_parts(expanded: Recipe, members: int, wanted: int | None, *, group: int,
                        spread: Spread | None) -> int:
    """How many parts side by side a chunk may train in (see `run_cv`): `wanted`, else one per intra-op thread with
    at least MIN_MEMBERS_PER_WORKER members each; 1 off the CPU and where the rules say one population."""
    from ..augment.config_text_audio import modal_augmentation
    from ..train.loop import resolve_device

    if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1):
        raise ValueError(f"side_by_side: expected a positive number of threads, or None for one per intra-op "
                         f"thread, got {wanted!r}")
    if wanted == 1 or group > 1 or spread is not None or modal_augmentation(expanded) == "text":
        return 1
    if resolve_device(expanded.train.device).type != "cpu":
        return 1
    return min(wanted, members) if wanted is not None else side_by_side_workers(members)


def _release(trainer: Trainer) -> None:
    """A finished chunk keeps its history and loop state; its weights, optimizer state and rows are freed."""
    trainer.model = trainer.optimizer = trainer.data = trainer.validation = None
    trainer.roles, trainer.penalized, trainer.best_state = [], [], {}


def _chunk_trainer(expanded: Recipe, ids: list[int], pool: Pool, folds: list[Fold], *, share: float,
                   results: _Scores, halving_eta: int | None, callbacks, leave: Leave | None):
    """The trainer of members `ids` of the expanded recipe as one population (not run yet), its rows and its
    halving; the members that leave during training, and all of them at the end (`_score_chunk`), are scored
    into `results`."""
    k = len(folds)
    sub = select_members(expanded, ids)
    rows = fold_rows(pool, folds, candidates=0, members=ids, standardize=sub.data.standardize,
                     stop_share=share, seed=sub.data.seed)
    if share > 0 and not rows.data.has_val:
        raise RecipeError("early stopping needs a stopping set: use a stop share > 0")
    seeds = member_seeds(sub)
    torch.manual_seed(member_seeds(expanded)[0])
    from ..augment.config_text_audio import modal_augmentation

    featurizers = None
    if modal_augmentation(sub) == "text":  # each member rewrites its own copy's training rows
        from .modal_folds import member_copies

        rows.data, featurizers = member_copies(rows.data, rows.featurizers)
    n_in = pool.X.shape[1] if pool.audio is None else pool.audio.features.shape[1]
    model = build_model(sub.model, n_in=n_in, n_out=pool.n_outputs, seeds=seeds,
                        input_shape=pool.image_shape, prune=sub.prune, quantize=sub.quantize)
    if pool.audio is not None:  # waveforms in, log-mel standardized on each member's fold, then the body
        from ..train.text_audio_pieces import FrontEnd
        from .modal_folds import audio_front

        model = FrontEnd(audio_front(pool, folds, ids, sub.data.standardize), model)
    restore = sub.train.early_stopping.restore_best
    halving = None
    if halving_eta is not None:
        def on_drop(trainer: Trainer, indices: list[int]) -> None:
            results.record(trainer, indices, restore=restore)
            for i in indices:
                results.dropped_at[trainer.member_ids[i]] = trainer.state.epoch

        chunk_candidates = len({m // k for m in ids})
        halving = Halving(halving_rungs(sub.train.epochs, chunk_candidates, halving_eta), k, halving_eta, on_drop,
                          score=None if rows.data.has_val else results.rung_scores)

    def prune(record: EpochRecord, trainer: Trainer) -> None:
        """Members that stopped early, diverged or were named by `leave` go: they cost no more compute."""
        state = trainer.state
        scored = None if leave is None or rows.data.has_val else results.scored_now(trainer)
        left = sorted(set(leave(record, trainer, scored))) if leave is not None else []
        for i in left:
            results.dropped_at[trainer.member_ids[i]] = state.epoch
        done = [i for i in range(trainer.members)
                if state.stopped[i] or state.diverged_at[i] is not None or i in left]
        if done and len(done) < trainer.members:
            results.record(trainer, done, restore=restore)
            trainer.keep_members([i for i in range(trainer.members) if i not in done])
        elif left:  # every member left: the loop ends, they are scored with the rest at the end
            for i in left:
                state.stopped[i] = True

    trainer = Trainer(model, rows.data, sub, callbacks=[*(callbacks or []), *([halving] if halving else []), prune])
    trainer.member_ids = list(ids)  # original member numbers: metrics rows and scores use them
    from .modal_folds import attach_modal

    attach_modal(trainer, sub, pool, featurizers)  # text or audio augmentation of the training rows, if any
    trainer.keeps_best = restore
    results.bind(trainer, rows, ids)
    return trainer, rows, halving


def _score_chunk(trainer: Trainer, results: _Scores) -> None:
    """After training (which restored the best weights of the members still there): score every member left."""
    results.record(trainer, list(range(trainer.members)), restore=False)


def candidate_table(run: CVRun) -> list[dict[str, Any]]:
    """Per candidate: its numbers, scored loss and metric per fold, mean and standard deviation over folds."""
    k = len(run.folds)
    metric = TASK_METRIC[run.rows.data.task]
    hyper = member_table(run.recipe)
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
        entry["dropped_at_epoch"] = next((run.dropped_at[m] for m in members if run.dropped_at[m] is not None), None)
        entry["epochs_trained"] = max(run.epochs[m] for m in members)
        out.append(entry)
    return out
