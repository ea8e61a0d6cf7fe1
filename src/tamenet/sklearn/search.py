"""`TameSearchCV`: `GridSearchCV` for tamenet estimators, the grid cross-validated as ONE population (X4, X1).

The grid's numeric recipe keys (`penalty__l2`, `model__dropout`, `train__lr`, `seed`, ...) and the
folds become members of one population trained through `tamenet.select`'s engine (`run_search`);
structural keys (`model__widths`, `train__optimizer`, ...) make one population each. Member c * K + f
is candidate c trained on fold f exactly as `estimator.set_params(**candidate).fit(X[train], y[train])`
would be (same rows in the same order, same scaler, same seeds), so the scores are those
`GridSearchCV` computes, at population speed.

Scores are the estimator's own `score`: accuracy for a classifier; R^2 for a regressor, from the
engine's RMSE on the fold's scored rows, `R^2 = 1 - RMSE^2 / Var(y_scored)` (the variance with
divisor n, as `r2_score`). `cv_results_` has scikit-learn's layout (`params`, `param_<name>`,
`split<i>_test_score`, `mean_test_score`, `std_test_score`, `rank_test_score`, `mean_fit_time`,
`std_fit_time`, `mean_score_time`, `std_score_time`); a population's training time is shared evenly
among its candidates and folds, and scoring happens inside training (score times 0).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted, indexable

from .estimators import TameEstimator, recipe_path


def _grids(param_grid: Any) -> list[dict[str, list]]:
    """`param_grid` (a dict or a list of dicts of value lists) as a list of dicts, checked."""
    grids = [param_grid] if isinstance(param_grid, dict) else param_grid
    if not isinstance(grids, (list, tuple)) or not grids or not all(isinstance(g, dict) for g in grids):
        raise TypeError(f"param_grid: expected a dict (or a list of dicts) of parameter -> list of values, "
                        f"got {type(param_grid).__name__}")
    out = []
    for grid in grids:
        for key, values in grid.items():
            recipe_path(key)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
                raise ValueError(f"param_grid[{key!r}]: expected a non-empty list of values, got {values!r}")
        out.append({k: list(v) for k, v in grid.items()})
    return out


class TameSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Exhaustive search over `param_grid` for a `TameClassifier` / `TameRegressor`, shaped like
    `GridSearchCV` (`cv`, `refit`, `best_params_`, `best_score_`, `best_estimator_`, `cv_results_`), with the
    candidates x folds trained as one population (see the module's docstring)."""

    def __init__(self, estimator: TameEstimator, param_grid: Any, *, cv: Any = 5, refit: bool = True) -> None:
        self.estimator = estimator
        self.param_grid = param_grid
        self.cv = cv
        self.refit = refit

    def fit(self, X: Any, y: Any) -> "TameSearchCV":
        """Cross-validate every candidate of the grid as one population (per structure), then refit the best."""
        from ..select.cv import make_pool
        from ..select.search import run_search
        from ..train import TASK_METRIC

        if not isinstance(self.estimator, TameEstimator):
            raise TypeError(f"estimator: expected a TameClassifier or TameRegressor, got "
                            f"{type(self.estimator).__name__} (use GridSearchCV for other estimators)")
        grids = _grids(self.param_grid)
        base = clone(self.estimator)
        X, y = indexable(X, y)
        X, y = base._check_xy(X, y)
        target = base._targets(y)
        recipe = base.build_recipe(len(X))
        folds = self._folds(X, target, seed=recipe.data.seed, classifier=is_classifier(base))
        pool = make_pool(recipe, X=X.astype(np.float32), y=target)
        stop_share = float(base.validation_fraction) if base.early_stopping else 0.0
        metric = TASK_METRIC[pool.task]
        candidates, scores, fit_times = [], [], []
        for grid in grids:
            axes = {recipe_path(k): v for k, v in grid.items()}
            rows, runs = run_search(recipe, axes, pool, folds, stop_share=stop_share)
            for row in rows:
                candidates.append({k: row[recipe_path(k)] for k in grid})
                scores.append(self._fold_scores(row[f"cv_{metric}_folds"], target, folds, metric))
                run = runs[row["population"]]
                fit_times.append(run.train_time / (run.candidates * len(folds)))
        self.cv_results_ = self._results(candidates, np.array(scores), np.array(fit_times), len(folds))
        self.best_index_ = int(np.argmin(self.cv_results_["rank_test_score"]))
        self.best_params_ = candidates[self.best_index_]
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        self.n_splits_ = len(folds)
        self.multimetric_ = False
        if self.refit:
            started = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_).fit(X, y)
            self.refit_time_ = time.perf_counter() - started
            self.n_features_in_ = self.best_estimator_.n_features_in_
            if hasattr(self.best_estimator_, "classes_"):
                self.classes_ = self.best_estimator_.classes_
        return self

    def _folds(self, X: np.ndarray, y: np.ndarray, *, seed: int, classifier: bool) -> list:
        """The (train, scored) rows of each fold. An integer `cv` (or None: 5) is tamenet's k-fold (stratified for
        a classifier): floor(N / k) scored rows per fold, so that every fold trains on as many rows (the N mod k
        others always train). A scikit-learn splitter (or list of splits) is used as it is, and must give every
        fold the same number of training rows: the folds train side by side as members of one population."""
        from ..select.splits import kfold

        cv = 5 if self.cv is None else self.cv
        if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
            return kfold(y, k=int(cv), seed=seed, stratify=classifier)
        splitter = check_cv(cv, y, classifier=classifier)
        folds = [(np.asarray(train), np.asarray(test)) for train, test in splitter.split(X, y)]
        sizes = sorted({len(train) for train, _ in folds})
        if len(sizes) > 1:
            raise ValueError(f"cv: TameSearchCV trains every fold as a member of one population, so every fold must "
                             f"train on the same number of rows; these folds train on {sizes} rows. Pass an integer "
                             "cv (tamenet's k-fold scores floor(N / k) rows per fold) or a row count the splitter "
                             "divides evenly")
        return folds

    @staticmethod
    def _fold_scores(values: list[float], target: np.ndarray, folds: list, metric: str) -> list[float]:
        """The estimator's `score` per fold: accuracy as it is; R^2 = 1 - RMSE^2 / Var(y_scored) for RMSE."""
        if metric == "accuracy":
            return [float(v) for v in values]
        return [1.0 - float(v) ** 2 / float(np.var(target[scored])) for v, (_, scored) in zip(values, folds)]

    @staticmethod
    def _results(candidates: list[dict], scores: np.ndarray, fit_times: np.ndarray, k: int) -> dict[str, Any]:
        """`cv_results_` in scikit-learn's layout."""
        from scipy.stats import rankdata

        out: dict[str, Any] = {"mean_fit_time": fit_times, "std_fit_time": np.zeros(len(candidates)),
                               "mean_score_time": np.zeros(len(candidates)),
                               "std_score_time": np.zeros(len(candidates))}
        for name in sorted({key for c in candidates for key in c}):
            column = np.ma.MaskedArray(np.empty(len(candidates), dtype=object), mask=True)
            for i, c in enumerate(candidates):
                if name in c:
                    column[i] = c[name]
            out[f"param_{name}"] = column
        out["params"] = candidates
        for i in range(k):
            out[f"split{i}_test_score"] = scores[:, i]
        mean = scores.mean(1)
        out["mean_test_score"] = mean
        out["std_test_score"] = scores.std(1)
        ranked = np.where(np.isfinite(mean), mean, -np.inf)  # a failed candidate ranks last
        out["rank_test_score"] = rankdata(-ranked, method="min").astype(np.int32)
        return out

    # ----------------------------------------------------------------- the refit estimator
    def _best(self) -> TameEstimator:
        check_is_fitted(self, "best_estimator_", msg="TameSearchCV: not fitted with refit=True; call fit first")
        return self.best_estimator_

    def predict(self, X: Any) -> np.ndarray:
        return self._best().predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._best().predict_proba(X)

    def score(self, X: Any, y: Any) -> float:
        return self._best().score(X, y)


__all__ = ["TameSearchCV"]
