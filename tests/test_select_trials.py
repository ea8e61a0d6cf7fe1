"""Optuna trials as populations, nested cross-validation, and chunking of populations that exceed a memory budget.

References: Optuna's own study (best trial and value), separate cross-validation runs of a trial's
candidate, the unchunked population (which every chunked one must reproduce exactly), and chance
level on random labels (which an honest nested estimate must not beat).
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch

import tamenet.select.run
from tamenet.config import RecipeError
from tamenet.models import build_model, count_parameters
from tamenet.recipes import load_recipe
from tamenet.select import search
from tamenet.select.cv import Pool, candidate_table, make_pool, run_cv, select_members
from tamenet.select.memory import chunk_size, estimate_memory, memory_budget, parse_size
from tamenet.select.search import candidate_recipe, parse_grid, run_search
from tamenet.select.splits import kfold
from tamenet.select.trials import ask_batch, make_study, parse_dimension, parse_space, run_trials


pytestmark = pytest.mark.usefixtures("one_thread")


def _raw(**train) -> dict:
    return {
        "data": {"name": "moons", "n_samples": 160, "noise": 0.2},
        "model": {"widths": [16]},
        "train": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "epochs": 8, "batch_size": 32,
                  "early_stopping": {"patience": None}, **train},
        "track": {"tensorboard": False, "plots": False},
        "seed": 0,
    }


def _setup(raw: dict, k: int = 3):
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    return recipe, pool, kfold(pool.y, k=k, seed=0)


def _tiny_budget(run, members: int) -> int:
    """A budget that holds `members` members of `run`'s population (and all folds' copies of the pool)."""
    estimate = run.memory["estimate"]
    return members * estimate["per_member"] + len(run.folds) * estimate["shared"]


# ================================================================== the search space


@pytest.mark.parametrize("item, kind, low, high, log", [
    ("train.lr=1e-4:1:log", optuna.distributions.FloatDistribution, 1e-4, 1.0, True),
    ("penalty.l2=0:0.5", optuna.distributions.FloatDistribution, 0.0, 0.5, False),
    ("train.input_noise=0:1", optuna.distributions.FloatDistribution, 0.0, 1.0, False),
    ("seed=0:9", optuna.distributions.IntDistribution, 0, 9, False),
])
def test_ranges_become_optuna_distributions(item, kind, low, high, log):
    dist = parse_dimension(item).distribution
    assert isinstance(dist, kind) and (dist.low, dist.high, dist.log) == (low, high, log)


def test_choices_keep_their_values_structural_ones_too():
    dim = parse_dimension("model.widths=[[8], [16, 16]]")
    assert not dim.numeric and dim.choices == ([8], [16, 16])
    assert [dim.decode(c) for c in dim.distribution.choices] == [[8], [16, 16]]
    assert parse_dimension("model.dropout=0,0.2,0.5").choices == (0, 0.2, 0.5)


@pytest.mark.parametrize("item, needle", [
    ("train.lr", "KEY=LOW:HIGH"),
    ("train.lr=1:0.1", "LOW < HIGH"),
    ("train.lr=0:1:log", "LOW > 0"),
    ("train.lr=1e-4:1:lin", "LOW:HIGH:log"),
    ("model.widths=8:64", "numeric key"),
    ("seed=0:9.5", "integer range"),
    ("penalty.l2=a,b", "plain numbers"),
    ("model.widths=[[8], [16]", "YAML list"),
])
def test_bad_space_items_name_what_was_expected(item, needle):
    with pytest.raises(RecipeError) as err:
        parse_dimension(item)
    assert needle in str(err.value) and "--space" in str(err.value)


def test_space_refuses_repeats_and_keys_the_recipe_already_lists():
    recipe = load_recipe({**_raw(), "penalty": {"l2": [0.0, 0.1]}})
    with pytest.raises(RecipeError, match="more than once"):
        parse_space(["train.lr=1e-3:1", "train.lr=1e-2:1"], recipe)
    with pytest.raises(RecipeError, match="already gives a list"):
        parse_space(["penalty.l2=1e-3:1:log"], recipe)
    with pytest.raises(RecipeError, match="search space"):
        parse_space([], recipe)


def test_random_sampler_covers_the_log_range_evenly():
    """400 log-uniform draws over 8 decades: every decade gets its share 50 (within 4.5 standard deviations)."""
    study = make_study("accuracy", sampler="random", pruner="none", seed=0, epochs=10)
    dims = [parse_dimension("penalty.l2=1e-6:1e2:log"), parse_dimension("model.widths=[[8], [16]]")]
    values = [v for _, v in ask_batch(study, dims, 400)]
    exponents = np.log10([v["penalty.l2"] for v in values])
    assert exponents.min() >= -6 and exponents.max() <= 2
    counts = np.histogram(exponents, bins=8, range=(-6, 2))[0]
    assert np.all(np.abs(counts - 50) < 4.5 * math.sqrt(50 * 7 / 8)), counts
    assert {tuple(v["model.widths"]) for v in values} == {(8,), (16,)}


# ================================================================== trials


def test_trials_are_reproducible_with_a_seed():
    recipe, pool, folds = _setup(_raw(epochs=4))
    dims = parse_space(["train.lr=1e-4:1:log", "penalty.l2=1e-5:1e-1:log"], recipe)
    first = run_trials(recipe, dims, pool, folds, trials=6, batch=3, seed=3, stop_share=0.2)[0]
    again = run_trials(recipe, dims, pool, folds, trials=6, batch=3, seed=3, stop_share=0.2)[0]
    assert first == again
    other = run_trials(recipe, dims, pool, folds, trials=6, batch=3, seed=4, stop_share=0.2)[0]
    assert [r["train.lr"] for r in other] != [r["train.lr"] for r in first]


@pytest.mark.parametrize("stopping_set", [True, False], ids=["stopping_set", "scored_rows"])
def test_pruning_stops_the_trials_with_absurd_learning_rates(stopping_set):
    """lr from 1e-7 to 1: the first batch sets the medians; later trials that barely learn are pruned early.
    Without a stopping set (no early stopping) the trials report their folds' scored rows instead: the
    pruner still acts (it used to get no reports and never pruned)."""
    stopping = {"patience": None} if stopping_set else {"patience": None, "restore_best": False}
    recipe, pool, folds = _setup(_raw(early_stopping=stopping))
    dims = parse_space(["train.lr=1e-7:1:log"], recipe)
    rows, runs, study = run_trials(recipe, dims, pool, folds, trials=16, batch=4, sampler="random", seed=0,
                                   stop_share=0.2)
    assert runs[0].trainer.data.has_val == stopping_set
    pruned = [r for r in rows if r["pruned"]]
    assert len(pruned) >= 3
    assert all(r["trial"] >= 4 for r in pruned)  # the median pruner compares with trials completed before
    assert all(r["epochs_trained"] < 8 for r in pruned)
    assert all(r["train.lr"] < 1e-3 for r in pruned)  # the poor ones: they barely move
    assert max(r["cv_accuracy_mean"] for r in pruned) < max(r["cv_accuracy_mean"] for r in rows)
    states = {t.number: t.state for t in study.trials}
    assert {n for n, s in states.items() if s == optuna.trial.TrialState.PRUNED} == {r["trial"] for r in pruned}
    trained = sum(sum(run.epochs) for run in runs)
    assert trained < 16 * 3 * 8  # pruned trials stopped costing compute
    assert trained == sum(r["epochs_trained"] * 3 for r in rows)  # (no early stopping: all folds train alike)


def test_best_trial_matches_its_recorded_score_and_a_run_of_its_own():
    raw = _raw(epochs=5)
    result = search(raw, trials=6, space=["train.lr=1e-3:1:log", "model.widths=[[8], [16]]"], batch=3, folds=3,
                    refit=False)
    rows, best = result["candidates"], result["best"]
    finished = [r for r in rows if not r["pruned"]]
    assert best["cv_accuracy_mean"] == max(r["cv_accuracy_mean"] for r in finished)
    assert best["cv_accuracy_mean"] == pytest.approx(np.mean(best["cv_accuracy_folds"]), rel=1e-12)
    assert result["trials"]["count"] == 6 and len(rows) == 6
    recipe, pool, folds = _setup(raw)
    keys = ["train.lr", "model.widths"]
    alone = run_cv(candidate_recipe(recipe, best, keys), pool, folds)
    assert best["cv_accuracy_folds"] == pytest.approx(alone.scores["scored"]["accuracy"], rel=1e-6)
    assert best["cv_loss_folds"] == pytest.approx(alone.scores["scored"]["loss"], rel=1e-5)


def test_trials_and_grid_are_exclusive_and_halving_is_for_grids():
    with pytest.raises(ValueError, match="either a grid"):
        search(_raw(), grid=["penalty.l2=0,1"], trials=3, space=["train.lr=1e-3:1"], folds=3)
    with pytest.raises(ValueError, match="either a grid"):
        search(_raw(), folds=3)
    with pytest.raises(ValueError, match="--pruner"):
        search(_raw(), trials=3, space=["train.lr=1e-3:1"], folds=3, halving=3)
    with pytest.raises(ValueError, match="unknown sampler 'tpee'"):
        search(_raw(), trials=3, space=["train.lr=1e-3:1"], sampler="tpee", folds=3)


# ================================================================== nested cross-validation


def test_nested_estimate_stays_at_chance_on_random_labels_while_the_inner_best_is_optimistic(monkeypatch):
    """Random labels: choosing the best of 12 seeds on the same folds inflates the inner score (a selection
    bias); scoring the choice on outer rows the search never saw gives chance, as it must."""
    rng = np.random.default_rng(0)
    n = 150
    pool = Pool(rng.normal(size=(n, 10)).astype(np.float32), rng.integers(0, 2, size=n), "classification", 2,
                "noise", 0)
    monkeypatch.setattr(tamenet.select.run, "make_pool", lambda recipe, **_: pool)
    raw = {**_raw(lr=0.02, epochs=20, batch_size="full", early_stopping={"restore_best": False}),
           "model": {"widths": [32]}, "data": {"name": "moons", "task": "classification"}}
    result = search(raw, grid=[f"seed={','.join(map(str, range(12)))}"], folds=3, nested=3, refit=False)
    nested = result["nested"]
    assert [len(f["chosen"]) for f in nested["folds"]] == [1, 1, 1]
    assert abs(nested["mean"] - 0.5) < 0.1
    assert all(f["inner_cv_mean"] > 0.53 for f in nested["folds"])  # every inner search's winner looks skilled
    assert nested["inner_best_mean"] > nested["mean"] + 0.05


def test_outer_held_out_rows_never_reach_the_inner_search(monkeypatch):
    raw = _raw(epochs=3)
    recipe, pool, _ = _setup(raw)
    outer = kfold(pool.y, k=3, seed=recipe.data.seed, stratify=True)
    calls = []
    original = tamenet.select.run.run_search

    def spy(recipe_, grid, pool_, folds_, **kw):
        calls.append(pool_)
        return original(recipe_, grid, pool_, folds_, **kw)

    monkeypatch.setattr(tamenet.select.run, "run_search", spy)
    result = search(raw, grid=["penalty.l2=0,1e-2"], folds=3, nested=3, refit=False)
    assert len(calls) == 1 + 3 and len(calls[0].y) == len(pool.y)  # the plain search, then one per outer fold
    rows = {tuple(x) for x in pool.X.tolist()}
    assert len(rows) == len(pool.y)
    for (train, held), inner in zip(outer, calls[1:]):
        seen = {tuple(x) for x in inner.X.tolist()}
        assert seen == {tuple(x) for x in pool.X[train].tolist()}
        assert not seen & {tuple(x) for x in pool.X[held].tolist()}
    for fold, (_, held) in zip(result["nested"]["folds"], outer):
        assert fold["scored_rows"] == len(held)
    scores = [f["outer"]["accuracy"] for f in result["nested"]["folds"]]
    assert result["nested"]["mean"] == pytest.approx(np.mean(scores))
    assert result["nested"]["std"] == pytest.approx(np.std(scores, ddof=1))


# ================================================================== memory and chunks


@pytest.mark.parametrize("text, size", [("2GB", 2 * 2**30), ("512mb", 512 * 2**20), ("1.5g", int(1.5 * 2**30)),
                                        ("1000", 1000), (4096, 4096)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["2XB", "-1GB", "0", "GB", ""])
def test_parse_size_rejects_bad_sizes(text):
    with pytest.raises(ValueError, match="--max-memory"):
        parse_size(text)


def test_budget_comes_from_the_argument_then_the_environment_then_physical_memory(monkeypatch):
    monkeypatch.setenv("TAMENET_MAX_MEMORY", "3MB")
    assert memory_budget("1MB") == 2**20 and memory_budget() == 3 * 2**20
    monkeypatch.delenv("TAMENET_MAX_MEMORY")
    physical = __import__("os").sysconf("SC_PAGE_SIZE") * __import__("os").sysconf("SC_PHYS_PAGES")
    assert memory_budget() == physical // 2


@pytest.mark.parametrize("optimizer, slots", [("sgd", 1), ("adam", 2), ("rmsprop", 2)])
def test_estimate_counts_weights_gradients_optimizer_state_and_grows_with_the_batch(optimizer, slots):
    raw = {**_raw(optimizer=optimizer, batch_size=16), "model": {"widths": [32, 32], "norm": "batch"}}
    recipe = load_recipe(raw)
    model = build_model(recipe.model, n_in=2, n_out=2, seeds=[0])
    params = count_parameters(model)
    buffers = sum(b.numel() for b in model.buffers() if b.dim() >= 1)
    sizes = dict(n_in=2, n_out=2, n_pool=128, n_fit=80, n_stop=20, n_scored=40, task="classification")
    small = estimate_memory(recipe, **sizes)
    assert small.gradients == 4 * params  # no clipping: no clipped copy
    assert small.optimizer == slots * 4 * params + small.parameters  # state + a step's temporaries
    assert small.parameters == 4 * (params + buffers) and small.best_weights == 2 * small.parameters
    def activations(batch: int) -> int:
        return estimate_memory(load_recipe({**raw, "train": {**raw["train"], "batch_size": batch}}),
                               **sizes).activations

    # autograd keeps per row the inputs, pre-activations, norm and activation outputs (and the weights once)
    a16, a32, a64 = activations(16), activations(32), activations(64)
    assert a64 - a16 == 3 * (a32 - a16)  # affine in the batch size
    assert (a32 - a16) / 16 >= 4 * (2 + 3 * 32 + 2)  # at least input, three tensors per hidden unit, output


def test_chunk_size_keeps_whole_groups_within_the_budget():
    recipe = load_recipe(_raw())
    estimate = estimate_memory(recipe, n_in=2, n_out=2, n_pool=128, n_fit=80, n_stop=20, n_scored=40,
                               task="classification")
    per, shared = estimate.per_member, estimate.shared
    assert chunk_size(estimate, members=12, group=3, copies=3, budget=12 * per + 3 * shared) == 12
    assert chunk_size(estimate, members=12, group=1, copies=3, budget=5 * per + 3 * shared) == 5
    assert chunk_size(estimate, members=12, group=3, copies=3, budget=5 * per + 3 * shared) == 3
    assert chunk_size(estimate, members=12, group=3, copies=3, budget=1) == 3  # one group even when too big


CHUNKED = {**_raw(optimizer="adam", lr=0.01, epochs=10, input_noise=0.2, early_stopping={"patience": 2}),
           "model": {"widths": [16], "norm": "batch", "dropout": [0.1, 0.3]},
           "penalty": {"l2": [0.0, 1e-2, 1e-1]}, "seed": [3, 5, 7]}


def test_chunked_and_unchunked_cross_validation_agree_exactly():
    recipe, pool, folds = _setup(CHUNKED, k=4)
    whole = run_cv(recipe, pool, folds)
    assert len(whole.chunks) == 1 and whole.memory["chunk_size"] == 12
    chunked = run_cv(recipe, pool, folds, max_memory=_tiny_budget(whole, 5))
    assert chunked.chunks == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]] and chunked.memory["chunk_size"] == 5
    assert chunked.scores == whole.scores
    assert chunked.best_epoch == whole.best_epoch and chunked.stopped == whole.stopped and any(whole.stopped)
    assert [(r["member"], r["val_loss"], r["train_loss"]) for r in chunked.history] == [
        (r["member"], r["val_loss"], r["train_loss"]) for r in whole.history]
    assert candidate_table(chunked) == candidate_table(whole)


def test_chunked_and_unchunked_searches_agree_grid_and_trials():
    raw = _raw(epochs=6)
    recipe, pool, folds = _setup(raw)
    grid = parse_grid(["penalty.l2=0,1e-3,1e-2", "model.widths=[[8],[16]]"])
    rows, runs = run_search(recipe, grid, pool, folds, stop_share=0.2)
    budget = _tiny_budget(runs[0], 4)
    chunked_rows, chunked_runs = run_search(recipe, grid, pool, folds, stop_share=0.2, max_memory=budget)
    assert [len(r.chunks) for r in chunked_runs] == [3, 5]  # widths [8], then the larger [16]
    assert chunked_rows == rows
    dims = parse_space(["train.lr=1e-7:1:log"], recipe)
    trials = run_trials(recipe, dims, pool, folds, trials=10, batch=5, sampler="random", stop_share=0.2)[0]
    chunked = run_trials(recipe, dims, pool, folds, trials=10, batch=5, sampler="random", stop_share=0.2,
                         max_memory=budget)
    assert max(len(r.chunks) for r in chunked[1]) > 1 and all(c % 3 == 0 for r in chunked[1] for c in map(len, r.chunks))
    assert chunked[0] == trials and any(r["pruned"] for r in trials)


def test_chunked_halving_is_halving_within_each_chunk():
    """With chunks, each chunk halves its own candidates: the same as separate halving runs of each chunk's
    candidates; the candidates that train to the end score exactly as without halving or chunks."""
    lrs = [1e-7, 0.05, 1e-6, 0.02, 1e-7, 1e-6]
    raw = {**_raw(epochs=9, lr=lrs)}
    recipe, pool, folds = _setup(raw)
    whole = run_cv(recipe, pool, folds)
    chunked = run_cv(recipe, pool, folds, halving_eta=3, max_memory=_tiny_budget(whole, 9))
    assert [len(c) for c in chunked.chunks] == [9, 9]
    for start in (0, 3):  # chunk 0 holds candidates 0-2, chunk 1 candidates 3-5
        alone = run_cv(select_members(recipe, list(range(start, start + 3))), pool, folds, halving_eta=3)
        members = range(start * 3, start * 3 + 9)
        assert [chunked.dropped_at[m] for m in members] == alone.dropped_at
        assert [chunked.scores["scored"]["accuracy"][m] for m in members] == alone.scores["scored"]["accuracy"]
    survivors = [m for m, d in enumerate(chunked.dropped_at) if d is None]
    assert {m // 3 for m in survivors} == {1, 3}  # the best candidate of each chunk
    for m in survivors:
        assert chunked.scores["scored"]["loss"][m] == whole.scores["scored"]["loss"][m]
    assert chunked.halving["compute_saved"] > 0.3
