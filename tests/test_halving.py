"""Successive halving: rungs, compaction that changes nothing for the members that stay, compute saved."""

import math

import pytest
import torch

from tamenet.recipes import load_recipe
from tamenet.select.cv import make_pool, run_cv
from tamenet.select.halving import halving_rungs
from tamenet.select.search import best_index, candidate_table
from tamenet.select.splits import make_folds
from tamenet.train import evaluate


def _recipe(lrs):
    return load_recipe({
        "data": {"name": "moons", "n_samples": 240, "noise": 0.2},
        "model": {"widths": [16], "dropout": 0.1},
        "train": {"optimizer": "sgd", "momentum": 0.9, "lr": lrs, "epochs": 9, "batch_size": 32,
                  "early_stopping": {"patience": None}},
        "seed": 1,
    })


@pytest.mark.parametrize("epochs, candidates, eta, expected", [
    (30, 13, 3, [1, 3, 10]),  # 13 -> 5 -> 2 -> 1 candidates: three rungs at E/27, E/9, E/3
    (27, 9, 3, [3, 9]),
    (40, 4, 2, [10, 20]),
    (30, 2, 3, [10]),
    (30, 1, 3, []),
])
def test_rungs_follow_eta_powers_until_one_candidate_is_left(epochs, candidates, eta, expected):
    assert halving_rungs(epochs, candidates, eta) == expected


def test_eta_below_two_is_refused():
    with pytest.raises(ValueError, match="eta >= 2"):
        halving_rungs(10, 5, 1)


def test_halving_keeps_the_clearly_best_candidate_and_leaves_its_results_unchanged():
    lrs = [1e-7, 0.05, 1e-7, 1e-6, 1e-7, 1e-6]  # candidate 1 is clearly best; the others barely move
    recipe = _recipe(lrs)
    pool = make_pool(recipe)
    folds = make_folds("kfold", pool.y, folds=3)
    full = run_cv(recipe, pool, folds)
    halved = run_cv(recipe, pool, folds, halving_eta=3)

    assert halved.halving["rungs"] == halving_rungs(9, 6, 3)
    assert halved.dropped_at[1 * 3] is None  # the best candidate trained to the end
    assert sum(d is not None for d in halved.dropped_at) == 3 * 5  # every other candidate left at a rung
    assert halved.trainer.members == 3  # the population really shrank to the best candidate's folds
    expected_saved = 1 - halved.halving["member_epochs"] / (18 * 9)
    assert halved.halving["compute_saved"] == pytest.approx(expected_saved) and expected_saved > 0.5

    # compaction is exact: the kept members' histories and scores equal those of the run without halving
    kept = [3, 4, 5]
    for m in kept:
        a = [r["val_loss"] for r in full.history if r["member"] == m]
        b = [r["val_loss"] for r in halved.trainer.history if r["member"] == m]
        assert a == b
        assert halved.scores["scored"]["accuracy"][m] == full.scores["scored"]["accuracy"][m]
    table = candidate_table(halved)
    assert best_index(table, "accuracy") == 1
    assert all(math.isfinite(row["cv_accuracy_mean"]) for row in table)  # dropped ones were scored when they left


def test_without_a_stopping_set_halving_ranks_by_the_scored_rows_and_keeps_the_clearly_best():
    """No early stopping, no stopping set: the rungs rank by the score the search selects on. The clearly
    best candidate sits in the middle of the grid, so keeping the grid's first candidates would fail."""
    lrs = [1e-7, 1e-6, 1e-7, 0.05, 1e-7, 1e-6]
    raw = {
        "data": {"name": "moons", "n_samples": 240, "noise": 0.2},
        "model": {"widths": [16], "dropout": 0.1},
        "train": {"optimizer": "sgd", "momentum": 0.9, "lr": lrs, "epochs": 9, "batch_size": 32,
                  "early_stopping": {"patience": None, "restore_best": False}},
        "seed": 1,
    }
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    folds = make_folds("kfold", pool.y, folds=3)
    at_first_rung = {}

    def scored_accuracy(record, trainer):  # each member's accuracy on its fold's scored rows, computed here
        if record.epoch == 1:
            data = trainer.data
            for i, m in enumerate(trainer.member_ids):
                rows = torch.from_numpy(folds[m % 3][1])
                _, acc = evaluate(trainer.model, data.X[int(data.fold[i])][rows], data.y[int(data.fold[i])][rows],
                                  data.task)
                at_first_rung[m] = float(acc[i])

    full = run_cv(recipe, pool, folds, callbacks=[scored_accuracy])
    halved = run_cv(recipe, pool, folds, halving_eta=3)
    assert not halved.trainer.data.has_val  # nothing but the scored rows to rank by
    assert [d is None for d in halved.dropped_at[::3]] == [False, False, False, True, False, False]
    assert halved.trainer.members == 3
    for m in (9, 10, 11):  # the survivor's folds score exactly as without halving
        assert halved.scores["scored"]["accuracy"][m] == full.scores["scored"]["accuracy"][m]
    # the first rung kept the 2 best candidates by their mean scored accuracy at that epoch
    means = {c: sum(at_first_rung[c * 3 + f] for f in range(3)) / 3 for c in range(6)}
    expected = sorted(sorted(means, key=lambda c: (-means[c], c))[:2])
    first = halved.halving["steps"][0]
    assert first["epoch"] == 1 and first["kept"] == expected and 3 in expected
