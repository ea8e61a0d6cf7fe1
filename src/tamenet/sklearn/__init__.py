"""scikit-learn compatible estimators (X4): `TameClassifier`, `TameRegressor` and `TameSearchCV`, whose grid
trains as one population through tamenet's own search engine."""

from .estimators import TameClassifier, TameEstimator, TameRegressor, recipe_path
from .search import TameSearchCV

__all__ = ["TameClassifier", "TameEstimator", "TameRegressor", "TameSearchCV", "recipe_path"]
