"""Model selection: validation schemes, cross-validation as one population, grid search.

References: scikit-learn's splitters and scalers, `math.comb`, numpy's mean / std, and separate
runs of each (candidate, fold) pair, which one population of all of them must reproduce.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

import tamenet.api
import tamenet.select.cv
import tamenet.train.loop
from tamenet.config import RecipeError
from tamenet.data import load_dataset, split_indices
from tamenet.models import build_model
from tamenet.recipes import load_recipe
from tamenet.select import (
    SCHEMES,
    Pool,
    candidate_table,
    kfold,
    leave_p_out,
    make_folds,
    make_pool,
    parse_grid,
    parse_values,
    repeated,
    run_cv,
    search,
)
from tamenet.select.cv import fold_rows
from tamenet.select.search import best_index, candidate_recipe, population_recipe, run_search, split_grid
from tamenet.trained import evaluate_run


pytestmark = pytest.mark.usefixtures("one_thread")


def _raw(**sections) -> dict:
    """A small moons recipe as a dict; `sections` replace keys inside a section (or a top-level value)."""
    raw = {
        "data": {"name": "moons", "n_samples": 200},
        "model": {"widths": [16]},
        "train": {"optimizer": "adam", "lr": 0.01, "epochs": 4, "batch_size": 32},
        "track": {"tensorboard": False, "plots": False},
        "seed": 0,
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    return raw


def _history(trainer, member: int, column: str) -> list[float]:
    return [row[column] for row in trainer.history if row["member"] == member]


# ================================================================== splits


@pytest.mark.parametrize("k", [5, 10])
@pytest.mark.parametrize("n", [97, 160])
def test_kfold_scores_disjoint_sets_of_equal_size(k, n):
    y = np.arange(n) % 3
    folds = kfold(y, k=k, seed=4)
    size = n // k
    assert len(folds) == k
    scored = [set(s.tolist()) for _, s in folds]
    assert all(len(s) == size for s in scored)
    assert sum(len(s) for s in scored) == len(set().union(*scored))  # pairwise disjoint
    never = n - len(set().union(*scored))
    assert never == n % k and never <= k - 1
    reference = [set(te.tolist()) for _, te in KFold(k, shuffle=True, random_state=4).split(np.zeros(n))]
    for (train, s), ref in zip(folds, reference):
        assert len(train) == n - size and len(set(train.tolist())) == len(train)
        assert not set(train.tolist()) & set(s.tolist())
        assert set(train.tolist()) | set(s.tolist()) == set(range(n))
        assert set(s.tolist()) <= ref  # scikit-learn's fold, at most trimmed


def _imbalanced(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(4, size=int(rng.integers(97, 400)), p=[0.5, 0.3, 0.15, 0.05])


@pytest.mark.parametrize("k", [5, 10])
@pytest.mark.parametrize("seed", range(6))
def test_stratified_kfold_keeps_every_class_within_one_row_of_its_share(k, seed):
    """Each fold scores N_c / k rows of class c, give or take one row (the exact share of a fold).

    Scored sets are trimmed to floor(N / k) rows; the trimmed rows must come from the classes above
    their share, or a class can fall almost two rows short.
    """
    y = _imbalanced(seed)
    n, size = len(y), len(y) // k
    folds = kfold(y, k=k, seed=seed, stratify=True)
    for train, scored in folds:
        assert len(scored) == size and len(train) == n - size
        assert not set(train.tolist()) & set(scored.tolist())
        for c in range(4):
            exact = np.sum(y == c) / k
            assert abs(np.sum(y[scored] == c) - exact) <= 1.0, (c, np.sum(y[scored] == c), exact)
    union = set().union(*[set(s.tolist()) for _, s in folds])
    assert len(union) == k * size


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize("val", [0.2, 0.3])
def test_repeated_splits_score_the_requested_share(val, stratify):
    y = np.arange(150) % 3
    folds = repeated(y, splits=5, val=val, seed=1, stratify=stratify)
    assert len(folds) == 5
    n_scored = math.ceil(val * len(y))  # scikit-learn's ShuffleSplit rounds the test share up
    for train, scored in folds:
        assert len(scored) == n_scored and len(train) == len(y) - n_scored
        assert not set(train.tolist()) & set(scored.tolist())
        if stratify:
            assert np.bincount(y[scored]).tolist() == [n_scored // 3] * 3
    assert len({tuple(s.tolist()) for _, s in folds}) == 5  # five different splits


def test_bootstrap_trains_on_n_draws_and_scores_exactly_out_of_bag():
    n = 120
    folds = make_folds("bootstrap", np.zeros(n, dtype=np.int64), folds=20, seed=2)
    shares = []
    for train, scored in folds:
        assert len(train) == n and len(np.unique(train)) < n  # drawn with repeats
        assert np.array_equal(scored, np.setdiff1d(np.arange(n), train))  # out of bag, exactly
        assert not np.isin(scored, train).any()
        shares.append(len(scored) / n)
    # each row is out of bag with probability (1 - 1/n)^n ~ 1/e
    assert np.mean(shares) == pytest.approx((1 - 1 / n) ** n, abs=0.03)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_leave_p_out_scores_every_subset_once(p):
    n = 7
    folds = leave_p_out(np.arange(n), p=p)
    assert len(folds) == math.comb(n, p)
    subsets = {tuple(sorted(s.tolist())) for _, s in folds}
    assert len(subsets) == math.comb(n, p)
    for train, scored in folds:
        assert len(scored) == p
        assert sorted([*train.tolist(), *scored.tolist()]) == list(range(n))
    if p == 1:
        assert len(make_folds("loo", np.arange(n))) == n


def test_leave_p_out_refuses_too_many_splits_and_suggests_repeated():
    y = np.arange(50)
    count = math.comb(50, 2)
    with pytest.raises(ValueError) as err:
        make_folds("lpo", y, p=2)
    message = str(err.value)
    assert f"{count:,}" in message and "repeated" in message
    assert len(make_folds("lpo", y, p=2, max_splits=count)) == count
    with pytest.raises(ValueError, match="repeated"):
        make_folds("loo", np.arange(1001))


def test_unknown_scheme_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        make_folds("kfolds", np.arange(20))
    message = str(err.value)
    assert "kfolds" in message and "did you mean 'kfold'" in message
    for name in SCHEMES:
        assert name in message


def test_pool_sets_the_test_split_aside():
    recipe = load_recipe(_raw())
    pool = make_pool(recipe)
    data = load_dataset(recipe.data)
    train, val, test = split_indices(data.y, data.task, val=recipe.data.val, test=recipe.data.test,
                                     seed=recipe.data.seed, stratify=True, classes=data.classes)
    assert len(pool.y) + pool.test_rows == len(data.y) and pool.test_rows == len(test)
    pool_rows = {tuple(r) for r in pool.X.tolist()}
    assert not pool_rows & {tuple(r) for r in data.X[test].tolist()}
    assert pool_rows == {tuple(r) for r in data.X[np.concatenate([train, val])].tolist()}


# ================================================================== one population = separate runs


EQUIVALENCE = {
    "sgd": dict(train={"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 6}),
    "batchnorm_dropout_noise_adam": dict(
        model={"widths": [16], "norm": "batch", "dropout": [0.1, 0.3]},
        train={"optimizer": "adam", "lr": 0.01, "epochs": 12, "input_noise": 0.2,
               "early_stopping": {"patience": 2}},
        seed=[3, 5, 7],
    ),
}


@pytest.mark.parametrize("case", list(EQUIVALENCE))
def test_population_of_candidates_and_folds_equals_separate_runs(case):
    """Member c * K + f of the search equals candidate c trained alone on fold f: scores and every epoch."""
    l2 = [0.0, 1e-2, 1e-1]
    raw = _raw(**copy.deepcopy(EQUIVALENCE[case]))
    raw["penalty"] = {"l2": l2}
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=4, seed=0)
    together = run_cv(recipe, pool, folds)
    assert len(together.best_epoch) == 12
    seeds = raw["seed"] if isinstance(raw["seed"], list) else [raw["seed"]] * 3
    stopped_somewhere = False
    for c, value in enumerate(l2):
        single = copy.deepcopy(raw)
        single["penalty"] = {"l2": value}
        single["seed"] = seeds[c]
        for f in range(4):
            alone = run_cv(load_recipe(single), pool, [folds[f]])
            m = c * 4 + f
            for split in ("fit", "scored"):
                for quantity in ("loss", "accuracy"):
                    assert together.scores[split][quantity][m] == pytest.approx(
                        alone.scores[split][quantity][0], rel=1e-5, abs=1e-7)
            own = _history(alone.trainer, 0, "val_loss")
            assert _history(together.trainer, m, "val_loss")[: len(own)] == pytest.approx(own, rel=1e-5)
            assert _history(together.trainer, m, "train_loss")[: len(own)] == pytest.approx(
                _history(alone.trainer, 0, "train_loss"), rel=1e-5)
            assert together.best_epoch[m] == alone.best_epoch[0]
            assert together.stopped[m] == alone.stopped[0]
            stopped_somewhere |= alone.trainer.state.stopped[0]
    if "early_stopping" in raw["train"]:
        assert stopped_somewhere  # the comparison covered members that stopped early


# ================================================================== no leak from the scored rows


def test_each_fold_is_scaled_on_its_training_rows_only():
    recipe = load_recipe(_raw(data={"name": "diabetes", "n_samples": None}))
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=5, seed=0)
    rows = fold_rows(pool, folds, candidates=1, standardize=True, stop_share=0.2, seed=0)
    data = rows.data
    whole = StandardScaler().fit(pool.X).transform(pool.X)
    for f, (train, scored) in enumerate(folds):
        X = data.X[f].double().numpy()
        np.testing.assert_allclose(X, StandardScaler().fit(pool.X[train]).transform(pool.X), atol=1e-5)
        np.testing.assert_allclose(X[train].mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(X[train].std(0), 1.0, atol=1e-5)
        assert np.abs(X[scored].mean(0)).max() > 1e-3  # the scored rows were not part of the fit
        assert np.abs(X - whole).max() > 1e-3  # and differ from scaling on the whole pool
        y = data.y[f].double().numpy()
        np.testing.assert_allclose(y, (pool.y - pool.y[train].mean()) / pool.y[train].std(), rtol=1e-5, atol=1e-5)
        assert float(data.target_std[f]) == pytest.approx(float(pool.y[train].std()), rel=1e-6)
    # moving fold 0's scored rows far away leaves fold 0's scaled training rows as they were
    moved = Pool(pool.X.copy(), pool.y.copy(), pool.task, pool.n_outputs, pool.name, pool.test_rows)
    train0, scored0 = folds[0]
    moved.X[scored0] += 100.0
    moved.y[scored0] += 1000.0
    again = fold_rows(moved, folds, candidates=1, standardize=True, stop_share=0.2, seed=0).data
    assert torch.equal(again.X[0][train0], data.X[0][train0])
    assert torch.equal(again.y[0][train0], data.y[0][train0])
    assert not torch.allclose(again.X[1][folds[1][0]], data.X[1][folds[1][0]])  # fold 1 trains on them


@pytest.mark.parametrize("scheme", ["kfold", "bootstrap", "repeated"])
def test_stopping_set_comes_from_the_training_rows_never_the_scored_ones(scheme):
    recipe = load_recipe(_raw())
    pool = make_pool(recipe)
    folds = make_folds(scheme, pool.y, folds=4, seed=0)
    rows = fold_rows(pool, folds, candidates=2, standardize=True, stop_share=0.2, seed=0)
    data = rows.data
    assert data.members == 8 and data.has_val
    for m in range(8):
        f = int(data.fold[m])
        train, scored = folds[f]
        assert f == m % 4
        stop = data.val[m][data.val_weight[m] > 0].numpy()
        fit = data.train[m].numpy()
        kept = rows.scored[m][rows.scored_weight[m] > 0].numpy()
        assert np.array_equal(np.sort(kept), np.sort(scored))
        assert not np.isin(stop, scored).any()
        assert not np.isin(fit, scored).any()
        assert len(fit) == len(train) - round(0.2 * len(train))  # every fold fits on the same number of rows
        if scheme == "bootstrap":  # the stopping set: 20 % of the distinct drawn rows, all their copies left out
            assert len(stop) == round(0.2 * len(np.unique(train)))
            assert set(fit) | set(stop) == set(train) and not np.isin(stop, fit).any()
        else:
            assert len(stop) == round(0.2 * len(train))
            assert np.array_equal(np.sort(np.concatenate([fit, stop])), np.sort(train))  # a split of the fold's rows


def test_bootstrap_stopping_rows_are_never_fitted():
    recipe = load_recipe(_raw())
    pool = make_pool(recipe)
    folds = make_folds("bootstrap", pool.y, folds=4, seed=0)
    data = fold_rows(pool, folds, candidates=1, standardize=True, stop_share=0.2, seed=0).data
    for m in range(4):
        stop = data.val[m][data.val_weight[m] > 0].numpy()
        assert not np.isin(stop, data.train[m].numpy()).any()


def test_changing_a_folds_scored_rows_does_not_change_how_it_trains():
    """Fold 0's members train, stop and restore exactly as before when fold 0's scored rows are garbage."""
    raw = _raw(train={"epochs": 8, "early_stopping": {"patience": 3}}, penalty={"l2": [0.0, 1e-2]})
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=3, seed=0)
    base = run_cv(recipe, pool, folds)
    rng = np.random.default_rng(0)
    scored0 = folds[0][1]
    spoiled = Pool(pool.X.copy(), pool.y.copy(), pool.task, pool.n_outputs, pool.name, pool.test_rows)
    spoiled.X[scored0] = rng.normal(5.0, 3.0, size=spoiled.X[scored0].shape).astype(np.float32)
    spoiled.y[scored0] = 1 - spoiled.y[scored0]
    again = run_cv(recipe, spoiled, folds)
    for m in (0, 3):  # fold 0 of both candidates
        for column in ("train_loss", "val_loss", "val_accuracy"):
            assert _history(again.trainer, m, column) == _history(base.trainer, m, column)
        assert again.best_epoch[m] == base.best_epoch[m]
        assert again.scores["fit"]["loss"][m] == base.scores["fit"]["loss"][m]
    for m in (1, 2, 4, 5):  # the other folds train on those rows: they do change
        assert _history(again.trainer, m, "train_loss") != _history(base.trainer, m, "train_loss")


def test_noise_labels_score_at_chance_while_training_memorizes_them():
    """Random labels: training fits them, the scored rows stay at chance; a leaky split would not."""
    rng = np.random.default_rng(0)
    n = 160
    pool = Pool(rng.normal(size=(n, 10)).astype(np.float32), rng.integers(0, 2, size=n), "classification", 2,
                "noise", 0)
    raw = _raw(data={"task": "classification"}, model={"widths": [32]},
               train={"lr": 0.02, "epochs": 100, "batch_size": "full", "early_stopping": {"restore_best": False}})
    recipe = load_recipe(raw)
    folds = kfold(pool.y, k=4, seed=0)
    honest = run_cv(recipe, pool, folds)
    assert np.mean(honest.scores["fit"]["accuracy"]) > 0.95
    assert np.mean(honest.scores["scored"]["accuracy"]) < 0.6
    leaky = run_cv(recipe, pool, [(np.arange(n), scored) for _, scored in folds])  # scored rows also trained
    assert np.mean(leaky.scores["scored"]["accuracy"]) > 0.95


# ================================================================== scores


def test_candidate_table_mean_and_std_over_folds_equal_numpy():
    recipe = load_recipe(_raw(penalty={"l2": [0.0, 1e-2, 1e-1]}))
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=4, seed=0)
    run = run_cv(recipe, pool, folds)
    table = candidate_table(run)
    assert [row["candidate"] for row in table] == [0, 1, 2]
    assert [row["l2"] for row in table] == pytest.approx([0.0, 1e-2, 1e-1])
    for c, row in enumerate(table):
        for split, label in (("scored", "cv"), ("fit", "train")):
            for quantity in ("loss", "accuracy"):
                values = np.array(run.scores[split][quantity][c * 4 : (c + 1) * 4])
                assert row[f"{label}_{quantity}_mean"] == pytest.approx(np.mean(values), rel=1e-12)
                assert row[f"{label}_{quantity}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert row["cv_accuracy_folds"] == run.scores["scored"]["accuracy"][c * 4 : (c + 1) * 4]
        assert row["best_epochs"] == run.best_epoch[c * 4 : (c + 1) * 4]


def test_scored_rmse_on_out_of_bag_rows_matches_scikit_learn():
    """Bootstrap scored sets differ in size (padded); each member's RMSE is over its own rows, original units."""
    recipe = load_recipe(_raw(data={"name": "diabetes", "n_samples": None}, train={"epochs": 3}))
    pool = make_pool(recipe)
    folds = make_folds("bootstrap", pool.y, folds=3, seed=0)
    assert len({len(s) for _, s in folds}) > 1
    run = run_cv(recipe, pool, folds)
    model = run.trainer.model.eval()
    with torch.no_grad():
        for m, (train, scored) in enumerate(folds):
            X = torch.from_numpy(StandardScaler().fit(pool.X[train]).transform(pool.X[scored]).astype(np.float32))
            out = model(X.unsqueeze(0).expand(3, -1, -1))[m, :, 0].double().numpy()
            pred = out * pool.y[train].std() + pool.y[train].mean()
            expected = math.sqrt(mean_squared_error(pool.y[scored], pred))
            assert run.scores["scored"]["rmse"][m] == pytest.approx(expected, rel=1e-4)


# ================================================================== search


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0,0.2,0.5", [0, 0.2, 0.5]),
        ("1e-4,1e-3", [1e-4, 1e-3]),
        ("relu,tanh", ["relu", "tanh"]),
        ("[[16], [32, 32]]", [[16], [32, 32]]),
        ("[1e-4, 0.5]", [1e-4, 0.5]),
        ("1e-4:1e-1:4", [1e-4, 1e-3, 1e-2, 1e-1]),
    ],
)
def test_parse_values(text, expected):
    values = parse_values(text)
    if isinstance(expected[0], float):
        assert values == pytest.approx(expected, rel=1e-12)
    else:
        assert values == expected
    assert [type(v) for v in values] == [type(v) for v in expected]


def test_log_range_has_exact_endpoints_and_a_constant_ratio():
    values = parse_values("1e-6:1e6:13")
    assert len(values) == 13
    assert values[0] == 1e-6 and values[-1] == 1e6
    ratios = np.array(values[1:]) / np.array(values[:-1])
    np.testing.assert_allclose(ratios, 10.0, rtol=1e-9)
    np.testing.assert_allclose(values, np.logspace(-6, 6, 13), rtol=1e-12)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("a:b:3", "LOW:HIGH:COUNT"),
        ("1e-4:1e-1", "LOW:HIGH:COUNT"),  # YAML would read 1:2 as the base-60 number 62
        ("1:2", "LOW:HIGH:COUNT"),
        ("0:1:3", "LOW > 0"),
        ("1:10:1", "COUNT >= 2"),
        ("[]", "non-empty YAML list"),
        ("[1, 2", "YAML list"),
        ("", "expected values"),
    ],
)
def test_parse_values_rejects_bad_forms(text, needle):
    with pytest.raises(RecipeError) as err:
        parse_values(text)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_parse_grid_needs_key_equals_values():
    assert parse_grid(["penalty.l2=0,1", "model.widths=[[8]]"]) == {"penalty.l2": [0, 1], "model.widths": [[8]]}
    with pytest.raises(RecipeError, match="KEY=VALUES"):
        parse_grid(["penalty.l2"])
    with pytest.raises(RecipeError, match="KEY=VALUES"):
        parse_grid(["=1,2"])


def test_numeric_keys_make_one_population():
    raw = _raw(train={"epochs": 2})
    result = search(raw, grid=["penalty.l2=0,1e-2", "train.lr=0.01,0.05"], folds=3, refit=False)
    assert result["populations"] == 1
    assert result["members"] == 4 * 3
    rows = result["candidates"]
    assert [(r["penalty.l2"], r["train.lr"]) for r in rows] == [(0, 0.01), (0, 0.05), (1e-2, 0.01), (1e-2, 0.05)]
    assert all(isinstance(r["penalty.l2"], (int, float)) for r in rows)


def test_structural_key_makes_separate_populations_with_the_same_scores_as_alone():
    raw = _raw(train={"epochs": 2})
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=3, seed=0)
    grid = parse_grid(["model.widths=[[16],[32]]", "penalty.l2=0,1e-2"])
    rows, runs = run_search(recipe, grid, pool, folds, stop_share=0.2)
    assert len(runs) == 2 and [len(r.best_epoch) for r in runs] == [6, 6]
    assert [r["population"] for r in rows] == [0, 0, 1, 1]
    assert [run.trainer.model.hidden[0].weight.shape[-1] for run in runs]  # [M, in, out] == [16, 32]
    alone = run_cv(candidate_recipe(recipe, rows[3], grid), pool, folds)  # widths [32], l2 1e-2, by itself
    assert rows[3]["cv_accuracy_folds"] == pytest.approx(alone.scores["scored"]["accuracy"], rel=1e-6)
    assert rows[3]["cv_loss_folds"] == pytest.approx(alone.scores["scored"]["loss"], rel=1e-5)


def test_best_candidate_has_the_best_mean_cv_metric():
    result = search(_raw(train={"epochs": 3}), grid=["penalty.l2=0,1e-1,1"], folds=3, refit=False)
    means = [row["cv_accuracy_mean"] for row in result["candidates"]]
    assert result["best"]["cv_accuracy_mean"] == max(means)
    assert result["best"]["candidate"] == int(np.argmax(means))
    regression = search(_raw(data={"name": "diabetes", "n_samples": None}, train={"epochs": 3}), grid=["penalty.l2=0,1,10"], folds=3,
                        refit=False)
    rmse = [row["cv_rmse_mean"] for row in regression["candidates"]]
    assert len(set(rmse)) == 3 and regression["best"]["candidate"] == int(np.argmin(rmse))
    # diverged candidates (NaN) never win
    assert best_index([{"cv_accuracy_mean": 0.8}, {"cv_accuracy_mean": math.nan}], "accuracy") == 0
    assert best_index([{"cv_rmse_mean": math.nan}, {"cv_rmse_mean": 5.0}, {"cv_rmse_mean": 3.0}], "rmse") == 2


def test_refit_touches_the_test_split_once_and_reports_its_scores(tmp_path, monkeypatch):
    raw = _raw(train={"epochs": 3})
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    n_test = pool.test_rows
    calls: list[tuple[str, int]] = []

    def spy(module):
        original = module.evaluate

        def evaluate(model, X, y, task, **kw):
            calls.append((module.__name__, y.shape[-1]))
            return original(model, X, y, task, **kw)

        monkeypatch.setattr(module, "evaluate", evaluate)

    for module in (tamenet.api, tamenet.select.cv, tamenet.train.loop):
        spy(module)
    result = search(raw, grid=["penalty.l2=0,1e-2"], folds=3, out=tmp_path / "search")
    assert ("tamenet.select.cv", len(pool.y) // 3) in calls  # the spies saw the cross-validation too
    assert [c for c in calls if c[1] == n_test] == [("tamenet.api", n_test)]  # no other split has its size
    monkeypatch.undo()
    refit = result["refit"]
    assert set(refit["test"]) == {"loss", "accuracy"}
    again = evaluate_run(tmp_path / "search" / "refit")
    assert refit["test"]["accuracy"] == pytest.approx(again["test"]["accuracy"][0], abs=1e-12)
    assert refit["test"]["loss"] == pytest.approx(again["test"]["loss"][0], rel=1e-6)
    assert result["sizes"]["test_set_aside"] == n_test


def test_dropout_grid_sets_every_hidden_layer():
    recipe = load_recipe(_raw(model={"widths": [16, 16], "dropout": [0.1, 0.0, 0.0]}))
    grid = parse_grid(["model.dropout=0,0.3"])
    structures, numbers = split_grid(recipe, grid)
    population = population_recipe(recipe, structures[0], numbers)
    assert population.model.dropout == [0.1, [0, 0.3], [0, 0.3]]  # input kept, both hidden layers set
    model = build_model(population.model, n_in=2, n_out=2, seeds=[0, 0])
    assert [d.p.tolist() for d in model.dropouts] == [pytest.approx([0.0, 0.3])] * 2
    assert model.input_dropout.p.tolist() == pytest.approx([0.1, 0.1])
    assert candidate_recipe(recipe, {"model.dropout": 0.3}, grid).model.dropout == [0.1, 0.3, 0.3]


def test_dropout_grid_follows_widths_from_the_same_grid():
    """The refit recipe of a candidate that changes widths and dropout together, whatever the key order."""
    recipe = load_recipe(_raw(model={"widths": [16]}))
    grid = parse_grid(["model.dropout=0,0.3", "model.widths=[[16],[16,16]]"])
    single = candidate_recipe(recipe, {"model.dropout": 0.3, "model.widths": [16, 16]}, grid)
    assert single.model.widths == [16, 16] and single.model.dropout == [0.0, 0.3, 0.3]
    build_model(single.model, n_in=2, n_out=2, seeds=[0])
    structures, numbers = split_grid(recipe, grid)
    assert [population_recipe(recipe, s, numbers).model.dropout for s in structures] == [
        [0.0, [0, 0.3]], [0.0, [0, 0.3], [0, 0.3]]]


@pytest.mark.parametrize("restore", [False, True], ids=["last_weights", "best_weights"])
def test_a_diverged_fold_scores_nan_with_its_last_weights_and_its_best_epoch_when_restoring(restore):
    """SGD at lr 1e8 (momentum, no clipping) diverges in epoch 1. Kept at its last (non-finite) weights it is a failed fit: NaN
    scores, as scikit-learn's error_score=nan, never chosen; restored to its best epoch it scores those
    weights (here the initial ones) like any other member. The healthy candidate is the same either way."""
    raw = _raw(train={"optimizer": "sgd", "momentum": 0.9, "lr": [0.05, 1e8], "epochs": 3, "clip": {"by": "none"},
                      "early_stopping": {"patience": None, "restore_best": restore}})
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=3, seed=0)
    run = run_cv(recipe, pool, folds)
    assert all(run.diverged_at[m] == 1 for m in (3, 4, 5))
    sick = [run.scores[split][q][m] for split in ("fit", "scored") for q in ("loss", "accuracy") for m in (3, 4, 5)]
    if restore:
        assert all(math.isfinite(v) for v in sick)
        assert all(run.best_epoch[m] == 0 for m in (3, 4, 5))
    else:
        assert all(math.isnan(v) for v in sick)
    healthy = [run.scores["scored"]["accuracy"][m] for m in (0, 1, 2)]
    assert all(0.5 < v <= 1.0 for v in healthy)
    table = candidate_table(run)
    assert best_index(table, "accuracy") == 0
    # every member diverges in the same epoch: none leaves early, the loop's end scores them all
    alone = load_recipe(_raw(train={**raw["train"], "lr": 1e8}))
    ended = run_cv(alone, pool, folds)
    assert all(d == 1 for d in ended.diverged_at)
    scores = ended.scores["scored"]["accuracy"]
    assert all(math.isfinite(v) for v in scores) if restore else all(math.isnan(v) for v in scores)


def test_regularization_path_marks_diverged_candidates_and_draws_the_chosen_best(monkeypatch):
    """The line for the best is the search's choice (a candidate halving dropped early never wins, even with a
    higher partial score); candidates without a score (diverged) are drawn as marks, not left out."""
    import tamenet.select.plots as plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure))
    rows = []
    for c, (l2, cv, dropped) in enumerate([(1e-4, 0.90, None), (1e-2, 0.95, 1), (1.0, 0.93, None), (1e2, math.nan, 1)]):
        rows.append({"candidate": c, "penalty.l2": l2, "cv_accuracy_mean": cv, "cv_accuracy_std": 0.01,
                     "train_accuracy_mean": cv, "train_accuracy_std": 0.01, "dropped_at_epoch": dropped})
    plots.plot_path(rows, "penalty.l2", "accuracy", None)
    lines = {line.get_label(): line for line in figures[0].axes[0].get_lines()}
    assert list(lines["diverged (no score)"].get_xdata()) == [1e2]
    assert best_index(rows, "accuracy") == 2
    assert list(lines["best penalty.l2 = 1"].get_xdata()) == [1.0, 1.0]
    for row in rows:  # every candidate failed: marks, and no "best" line
        row["cv_accuracy_mean"] = math.nan
    plots.plot_path(rows, "penalty.l2", "accuracy", None)
    labels = [line.get_label() for line in figures[1].axes[0].get_lines()]
    assert "diverged (no score)" in labels and not any(label.startswith("best") for label in labels)
