"""scikit-learn estimators over tamenet (X4): `TameClassifier` and `TameRegressor`.

Every recipe key is an estimator parameter with `__` for the recipe's dots: ``penalty__l2``,
``model__widths``, ``train__epochs``, ``train__clip__max``, ``seed``; the named parameters are
``recipe`` (a dict, a YAML file or a `Recipe` to start from; None: the library's defaults, an
MLP 256-256 with Adam for 100 epochs), ``early_stopping``, ``validation_fraction`` and
``random_state`` (the seed, unless ``seed`` is given). So `get_params`, `set_params`, `clone`,
`Pipeline`, `cross_val_score` and `GridSearchCV` work as for any scikit-learn estimator.

`fit(X, y)` trains on all the rows given, as scikit-learn's estimators do: there is no hidden test
split, and a validation split only with ``early_stopping=True`` (``validation_fraction`` of the
rows, stratified for classes; the recipe's ``train.early_stopping.patience``, else 10 epochs).
Inputs are standardized inside (the recipe's ``data.standardize``), fitted on the training rows.
Predictions run the trained population in float64 (the float32 weights widened), so they do not
depend on how the rows are batched or ordered; a population (say ``seed=[0, 1, 2]``) predicts with
the mean of its members.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import Recipe, set_key, to_dict
from ..data import Standardizer

NAMED = ("recipe", "early_stopping", "validation_fraction", "random_state")
"""The estimators' own parameters; every other parameter is a recipe key."""

DEFAULT_PATIENCE = 10
"""Early stopping's patience (epochs) when `early_stopping=True` and the recipe sets none."""


def recipe_path(param: str) -> str:
    """The recipe key of an estimator parameter, `penalty__l2` -> `penalty.l2`, checked against the recipe's
    sections and keys; an unknown one raises ValueError naming the valid keys (and the closest)."""
    if not isinstance(param, str):
        raise TypeError(f"expected a parameter name (str), got {type(param).__name__}")
    parts = param.split("__")
    cls: Any = Recipe
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            valid = [f"{'__'.join(parts[:depth] + [name])}" for name in fields]
            close = difflib.get_close_matches("__".join(parts[: depth + 1]), valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"invalid parameter {param!r}{hint} (expected one of {', '.join(NAMED)}, or a recipe "
                             f"key with __ for its dots; valid here: {', '.join(valid)})")
        hint_type = typing.get_type_hints(cls)[part]
        if depth < len(parts) - 1:
            if not dataclasses.is_dataclass(hint_type):
                raise ValueError(f"invalid parameter {param!r}: '{'__'.join(parts[: depth + 1])}' is a value, "
                                 "not a section")
            cls = hint_type
    return ".".join(parts)


def _recipe_dict(source: Any) -> dict:
    """The plain dict of the starting recipe (None: the library's defaults, not the default job)."""
    from ..recipes import read_yaml

    if source is None:
        return {}
    if isinstance(source, Recipe):
        return to_dict(source)
    if isinstance(source, dict):
        return dict(source)
    if isinstance(source, (str, Path)):
        return read_yaml(source)
    raise TypeError(f"recipe: expected None, a dict, a YAML file or a Recipe, got {type(source).__name__}")


class TameEstimator(BaseEstimator):
    """What `TameClassifier` and `TameRegressor` share: parameters over recipe keys, training, pickling."""

    _task = "classification"

    def __init__(self, recipe: Any = None, *, early_stopping: bool = False, validation_fraction: float = 0.1,
                 random_state: int | None = None, **params: Any) -> None:
        self.recipe = recipe
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self._recipe_params = dict(params)  # keys checked by fit (scikit-learn's rule: init and set_params never raise)

    # ----------------------------------------------------------------- parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The named parameters and every recipe key set on this estimator (`penalty__l2`, ...)."""
        return {**super().get_params(deep=deep), **self._recipe_params}

    def set_params(self, **params: Any) -> "TameEstimator":
        """Set named parameters or recipe keys (`model__widths=[64]`); `fit` refuses an unknown key (ValueError)."""
        for key, value in params.items():
            if key in NAMED:
                setattr(self, key, value)
            else:
                self._recipe_params[key] = value
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    # ----------------------------------------------------------------- the recipe
    def build_recipe(self, n_rows: int) -> Recipe:
        """The recipe `fit` trains with: the starting recipe, the recipe keys set here, then what an estimator
        fixes (the task, every row for training, validation only with early stopping, no files)."""
        from ..recipes import load_recipe

        raw = _recipe_dict(self.recipe)
        for key, value in self._recipe_params.items():
            raw = set_key(raw, recipe_path(key), value)
        if self.random_state is not None and "seed" not in self._recipe_params:
            if isinstance(self.random_state, bool) or not isinstance(self.random_state, (int, np.integer)):
                raise ValueError(f"random_state: expected None or an integer seed, got {self.random_state!r}")
            raw["seed"] = int(self.random_state)
        fraction = self.validation_fraction
        if self.early_stopping:
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
                raise ValueError(f"validation_fraction: expected a share in (0, 1) with early_stopping, got {fraction!r}")
        raw = set_key(raw, "data.task", self._task)
        raw = set_key(raw, "data.val", float(fraction) if self.early_stopping else 0.0)
        raw = set_key(raw, "data.test", 0.0)
        for key in ("tensorboard", "plots", "checkpoint", "mlflow", "wandb"):
            raw = set_key(raw, f"track.{key}", False)
        es = (raw.get("train") or {}).get("early_stopping") or {}
        if self.early_stopping:
            if es.get("patience") is None:
                raw = set_key(raw, "train.early_stopping.patience", DEFAULT_PATIENCE)
        else:
            raw = set_key(raw, "train.early_stopping.patience", None)
            raw = set_key(raw, "train.early_stopping.restore_best", False)
        return load_recipe(raw)

    # ----------------------------------------------------------------- training and predicting
    def _check_xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, dtype="numeric", y_numeric=self._task == "regression")
        if len(X) < 2:
            raise ValueError(f"{type(self).__name__}: expected at least 2 samples, got {len(X)} sample")
        return X, y

    def _targets(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)

    def fit(self, X: Any, y: Any) -> "TameEstimator":
        """Train on every row of X [N, F] and y [N] (see the module's docstring); returns self."""
        from ..api import fit

        X, y = self._check_xy(X, y)
        target = self._targets(y)
        recipe = self.build_recipe(len(X))
        result = fit(recipe, X=X.astype(np.float32), y=target)
        self.model_ = result.model.eval().double()
        self.preprocessing_ = result.data.preprocessing()
        self.recipe_ = to_dict(result.recipe)
        self.summary_ = result.summary
        self.n_iter_ = int(result.summary["epochs_run"])
        return self

    @torch.no_grad()
    def _outputs(self, X: Any) -> torch.Tensor:
        """The members' raw outputs [M, N, K] in float64 for raw rows X."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype="numeric", reset=False)
        X = np.asarray(X, dtype=np.float64)
        scaler = self.preprocessing_.get("scaler")
        if scaler is not None:
            X = Standardizer.from_dict(scaler).transform(X)
        return self.model_(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64)))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ may hand back __dict__ itself
        if "model_" in state:  # the population as its state dict: no module objects in the pickle
            model = state.pop("model_")
            state["_model_state"] = {k: v.clone() for k, v in model.state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_model_state", None)
        super().__setstate__(state)
        if saved is not None:
            from ..models import build_model
            from ..recipes import load_recipe
            from ..train.hyper import member_seeds

            recipe, pre = load_recipe(self.recipe_), self.preprocessing_
            model = build_model(recipe.model, n_in=int(pre["n_features"]), n_out=int(pre["n_outputs"]),
                                seeds=member_seeds(recipe), input_shape=pre.get("image_shape"))
            model = model.double()
            model.load_state_dict(saved)
            self.model_ = model.eval()


class TameClassifier(ClassifierMixin, TameEstimator):
    """A tamenet network as a scikit-learn classifier: `fit`, `predict`, `predict_proba`, `score` (accuracy),
    `classes_`, `n_features_in_`; parameters are recipe keys (`penalty__l2=1e-3`, `model__widths=[64]`)."""

    _task = "classification"

    def _targets(self, y: np.ndarray) -> np.ndarray:
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"TameClassifier: expected at least 2 classes in y, got 1 class ({self.classes_[0]!r})")
        return codes.reshape(-1).astype(np.int64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [N, K], columns in `classes_` order (the members' mean for a population)."""
        return torch.softmax(self._outputs(X), dim=-1).mean(0).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, as a label of `classes_`."""
        probabilities = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[probabilities.argmax(1)]


class TameRegressor(RegressorMixin, TameEstimator):
    """A tamenet network as a scikit-learn regressor: `fit`, `predict` (in y's units), `score` (R^2),
    `n_features_in_`; parameters are recipe keys (`penalty__l2=1e-3`, `model__widths=[64]`)."""

    _task = "regression"

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values [N] in y's units (the members' mean for a population)."""
        values = self._outputs(X)[..., 0].mean(0).numpy()
        target = self.preprocessing_.get("target_scaler")
        if target is not None:
            scaler = Standardizer.from_dict(target)
            values = values * float(np.ravel(scaler.std)[0]) + float(np.ravel(scaler.mean)[0])
        return values


__all__ = ["DEFAULT_PATIENCE", "NAMED", "TameClassifier", "TameEstimator", "TameRegressor", "recipe_path"]
