"""Restricting the inputs (C6): `model.input_features` ranks each member's inputs on its own training rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.feature_selection import SelectKBest, f_classif, f_regression

from tamenet.api import fit
from tamenet.config import RecipeError
from tamenet.inputs import input_ranking
from tamenet.recipes import load_recipe
from tamenet.select import Pool, kfold, make_pool, run_cv, search
from tamenet.select.search import NUMERIC_KEYS
from tamenet.trained import load_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _raw(**model) -> dict:
    return {
        "data": {"name": "digits"},
        "model": {"widths": [32], **model},
        "train": {"optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 64, "early_stopping": {"patience": None}},
        "track": {"tensorboard": False, "plots": False},
        "seed": 0,
    }


def _kbest(X: np.ndarray, y: np.ndarray, k: int, score=f_classif) -> set[int]:
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", UserWarning)  # constant pixels
        return set(np.flatnonzero(SelectKBest(score, k=k).fit(X, y).get_support()).tolist())


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_ranking_picks_the_same_inputs_as_select_k_best(task):
    from sklearn.datasets import load_diabetes, load_digits

    X, y = load_digits(return_X_y=True) if task == "classification" else load_diabetes(return_X_y=True)
    score = f_classif if task == "classification" else f_regression
    order = input_ranking(X[:500], y[:500], task)
    assert sorted(order.tolist()) == list(range(X.shape[1]))
    for k in (1, 5, 8):
        assert set(order[:k].tolist()) == _kbest(X[:500], y[:500], k, score)
    if task == "classification":  # digits has constant pixels on these rows: no statistic, ranked last
        constant = np.flatnonzero(X[:500].std(0) == 0)
        assert len(constant) > 0 and set(order[-len(constant):].tolist()) == set(constant.tolist())


def test_fit_keeps_each_members_k_best_inputs_of_the_training_split_and_they_alone_matter():
    result = fit(_raw(input_features=[5, 20, 0]))
    model, split = result.model, result.data
    mask = model.input_mask
    assert mask.sum(1).tolist() == [5.0, 20.0, 64.0]
    for m, k in enumerate((5, 20)):
        assert set(torch.nonzero(mask[m]).flatten().tolist()) == _kbest(split.X_train.numpy(), split.y_train.numpy(), k)
    # the masked inputs reach neither the outputs nor the first layer's weight gradients
    x = split.X_test[:50]
    model.eval()
    changed = x + 3.0 * (1 - mask[0])  # every input member 0 does not see, moved
    torch.testing.assert_close(model(changed)[0], model(x)[0])
    assert not torch.allclose(model(changed)[2], model(x)[2])  # member 2 sees them all
    model.train()
    model.zero_grad()
    model(x).sum().backward()
    grad = model.hidden[0].weight.grad  # [M, in, out]
    assert torch.all(grad[0][mask[0] == 0] == 0) and torch.any(grad[0][mask[0] == 1] != 0)


def test_cross_validation_ranks_each_fold_on_its_training_rows_only():
    recipe = load_recipe(_raw(input_features=6))
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=3, seed=0)
    run = run_cv(recipe, pool, folds, stop_share=0.0)
    masks = run.trainer.model.input_mask
    data = run.trainer.data
    for m in range(3):
        rows = data.train[m].numpy()
        X = data.X[int(data.fold[m])].numpy()[rows]
        assert set(torch.nonzero(masks[m]).flatten().tolist()) == _kbest(X, pool.y[rows], 6)
    assert len({tuple(torch.nonzero(masks[m]).flatten().tolist()) for m in range(3)}) > 1  # folds choose differently
    # spoiling fold 0's scored rows changes nothing for fold 0's choice (they are never ranked on)
    spoiled = Pool(pool.X.copy(), pool.y.copy(), pool.task, pool.n_outputs, pool.name, pool.test_rows)
    scored = folds[0][1]
    spoiled.X[scored] = np.random.default_rng(0).normal(0, 20, size=spoiled.X[scored].shape).astype(np.float32)
    spoiled.y[scored] = (spoiled.y[scored] + 1) % 10
    again = run_cv(recipe, spoiled, folds, stop_share=0.0).trainer.model.input_mask
    assert torch.equal(again[0], masks[0])
    assert not torch.equal(again[1], masks[1]) or not torch.equal(again[2], masks[2])


def test_with_a_stopping_set_each_fold_ranks_on_its_fit_rows_only():
    """Early stopping carves a stopping set out of each fold's training rows: the ranking never sees it."""
    recipe = load_recipe(_raw(input_features=3))
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=3, seed=0)
    run = run_cv(recipe, pool, folds, stop_share=0.3)
    data = run.trainer.data
    assert data.has_val
    for m in range(3):
        fit_rows, stop_rows = data.train[m].numpy(), data.val[m][data.val_weight[m] > 0].numpy()
        assert not np.isin(stop_rows, fit_rows).any()
        X = data.X[int(data.fold[m])].numpy()
        assert set(torch.nonzero(run.trainer.model.input_mask[m]).flatten().tolist()) == \
            _kbest(X[fit_rows], pool.y[fit_rows], 3)


def test_optuna_draws_whole_input_counts():
    from tamenet.select.trials import parse_space

    (dim,) = parse_space(["model.input_features=1:64"], load_recipe(_raw()))
    assert dim.numeric and type(dim.distribution).__name__ == "IntDistribution"


def test_a_grid_over_input_features_is_one_population_with_the_scores_of_separate_runs():
    assert "model.input_features" in NUMERIC_KEYS
    raw = _raw()
    result = search(raw, grid=["model.input_features=8,24,0"], folds=3, refit=False, stop_share=0.0)
    assert result["populations"] == 1 and result["members"] == 9
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=3, seed=recipe.data.seed)
    for row in result["candidates"]:
        alone = run_cv(load_recipe(_raw(input_features=int(row["model.input_features"]))), pool, folds, stop_share=0.0)
        assert row["cv_accuracy_folds"] == alone.scores["scored"]["accuracy"]
    accuracy = {int(r["model.input_features"]): r["cv_accuracy_mean"] for r in result["candidates"]}
    assert accuracy[8] < accuracy[24]  # 8 of 64 pixels: a measurably poorer model after 3 epochs


def test_the_mask_is_saved_and_reloaded_with_the_model(tmp_path):
    result = fit(_raw(input_features=[10, 30]), out=tmp_path / "run")
    trained = load_run(tmp_path / "run")
    assert torch.equal(trained.model.input_mask, result.model.input_mask)
    x = result.data.X_test[:20]
    torch.testing.assert_close(trained.model(x), result.model.eval()(x))


@pytest.mark.parametrize("value, needle", [(65, "from 1 to 64 .*got 65"), (2.5, "whole numbers .*got 2.5"),
                                           (-1, "input_features: expected a value >= 0, got -1")])
def test_bad_counts_are_refused_naming_the_range(value, needle):
    with pytest.raises(RecipeError, match=needle):
        fit(_raw(input_features=value))


def test_a_users_module_cannot_restrict_its_inputs():
    with pytest.raises(RecipeError, match="model kinds"):
        fit(_raw(input_features=5), module=torch.nn.Linear(64, 10))


@pytest.mark.parametrize("kind, model", [("cnn", {"channels": [4], "head_widths": []}),
                                         ("resnet", {"channels": [4], "blocks": 1})])
def test_convolutional_members_see_only_their_inputs_too(kind, model):
    raw = _raw(kind=kind, input_features=[12, 0], **model)
    raw["model"].pop("widths")
    raw["train"]["epochs"] = 1
    result = fit(raw)
    net, mask = result.model.eval(), result.model.input_mask
    x = result.data.X_test[:30]
    changed = x + 2.0 * (1 - mask[0])
    torch.testing.assert_close(net(changed)[0], net(x)[0])
    assert not torch.allclose(net(changed)[1], net(x)[1])
