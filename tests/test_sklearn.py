"""scikit-learn estimators (`tamenet.sklearn`): scikit-learn's own estimator checks, Pipeline and GridSearchCV,
pickling, parameters over recipe keys, and `TameSearchCV` (the grid as one population) against
`GridSearchCV(TameClassifier)` on the same grid and folds: the same per-fold scores and the same choice."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from tamenet.sklearn import TameClassifier, TameRegressor, TameSearchCV

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]

TINY = {"train__epochs": 3, "model__widths": [8], "train__lr": 0.1, "train__batch_size": 32}
"""Small enough for CI, and enough for scikit-learn's accuracy > 0.83 (blobs) and R^2 > 0.5 checks."""

EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {"TameClassifier": {}, "TameRegressor": {}}
"""check name -> why it is expected to fail, per estimator. None is: both pass every check scikit-learn runs
(array-API input is skipped by scikit-learn itself unless SCIPY_ARRAY_API is set)."""


@parametrize_with_checks([TameClassifier(**TINY), TameRegressor(**TINY)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_a_pipeline_with_a_scaler_runs_inside_grid_search():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), TameClassifier(**TINY))
    search = GridSearchCV(pipe, {"tameclassifier__penalty__l2": [0.0, 10.0]}, cv=3).fit(X, y)
    assert search.best_params_ == {"tameclassifier__penalty__l2": 0.0}  # a strong penalty underfits iris
    assert search.cv_results_["mean_test_score"][0] > search.cv_results_["mean_test_score"][1]
    assert search.best_estimator_[-1].recipe_["penalty"]["l2"] == 0.0 and search.score(X, y) > 0.8


def test_a_fitted_estimator_pickles_and_predicts_the_same():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    fitted = TameClassifier(**TINY, model__norm="batch", model__dropout=0.2).fit(X, labels)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    assert list(again.predict(X[:3])) == list(fitted.predict(X[:3])) and list(again.classes_) == list(labels[[0, 50, 100]])


def test_parameters_are_recipe_keys():
    est = TameClassifier(penalty__l2=1e-3, random_state=4)
    assert est.get_params()["penalty__l2"] == 1e-3 and clone(est).get_params() == est.get_params()
    est.set_params(model__widths=[5], train__epochs=2, train__clip__max=0.5)
    X, y = load_iris(return_X_y=True)
    recipe = est.fit(X, y).recipe_
    assert recipe["model"]["widths"] == [5] and recipe["train"]["epochs"] == 2 and recipe["seed"] == 4
    assert recipe["train"]["clip"]["max"] == 0.5 and recipe["data"]["val"] == 0 and recipe["data"]["test"] == 0
    assert est.summary_["sizes"] == {"train": 150, "val": 0, "test": 0}  # every row trains
    with pytest.raises(ValueError, match="did you mean 'penalty__l2'"):
        TameClassifier(penalty__l3=1.0).fit(X, y)
    stopped = TameClassifier(**TINY, early_stopping=True, validation_fraction=0.2).fit(X, y)
    assert stopped.summary_["sizes"]["val"] == 30 and stopped.recipe_["train"]["early_stopping"]["patience"] == 10


def test_a_regressor_cross_validates():
    X, y = load_diabetes(return_X_y=True)
    scores = cross_val_score(TameRegressor(**{**TINY, "train__epochs": 20}), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.3  # R^2 of a linear-ish fit is about 0.45


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_tame_search_cv_scores_as_grid_search_does(task):
    if task == "classification":
        X, y = load_iris(return_X_y=True)
        est = TameClassifier(**TINY)
    else:
        X, y = load_diabetes(return_X_y=True)
        X, y = X[:201], y[:201]  # 3 folds of 67
        est = TameRegressor(**{**TINY, "train__lr": 0.03, "train__epochs": 10})
    grid = {"penalty__l2": [0.0, 1e-2, 3.0], "model__widths": [[4], [8]]}
    cv = KFold(3, shuffle=True, random_state=0)
    ours = TameSearchCV(est, grid, cv=cv).fit(X, y)
    theirs = GridSearchCV(est, grid, cv=cv).fit(X, y)
    assert ours.n_splits_ == 3 and len(ours.cv_results_["params"]) == 6
    for key in ("params", "mean_test_score", "std_test_score", "rank_test_score", "split2_test_score",
                "param_penalty__l2", "mean_fit_time"):
        assert key in theirs.cv_results_ and key in ours.cv_results_
    order = [ours.cv_results_["params"].index(p) for p in theirs.cv_results_["params"]]
    tolerance = 0 if task == "classification" else 1e-4  # R^2 from float32 RMSEs
    for i in range(3):
        np.testing.assert_allclose(ours.cv_results_[f"split{i}_test_score"][order],
                                   theirs.cv_results_[f"split{i}_test_score"], rtol=0, atol=tolerance)
    assert ours.best_params_ == theirs.best_params_
    assert math.isclose(ours.best_score_, theirs.best_score_, abs_tol=tolerance)
    np.testing.assert_allclose(ours.predict(X[:5]), theirs.predict(X[:5]), rtol=1e-6)


def test_tame_search_cv_with_an_integer_cv_uses_equal_folds_and_refuses_unequal_ones():
    X, y = load_iris(return_X_y=True)
    X, y = X[:148], y[:148]  # 148 rows: 3 folds of 49 scored rows, one row always trains
    ours = TameSearchCV(TameClassifier(**TINY), {"seed": [0, 1]}, cv=3, refit=False).fit(X, y)
    assert ours.n_splits_ == 3 and not hasattr(ours, "best_estimator_")
    with pytest.raises(ValueError, match=r"train on \[98, 99\] rows"):
        TameSearchCV(TameClassifier(**TINY), {"seed": [0, 1]}, cv=KFold(3)).fit(X, y)
