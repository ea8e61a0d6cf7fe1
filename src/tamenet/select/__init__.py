"""Model selection at population speed: validation schemes, cross-validation and grid search (B1-B3, X1)."""

from .cv import STOP_SHARE, CVRun, Pool, candidate_table, make_pool, run_cv
from .run import cross_validate, search
from .search import NUMERIC_KEYS, parse_grid, parse_values
from .splits import MAX_SPLITS, SCHEMES, holdout, kfold, leave_p_out, make_folds, repeated

__all__ = [
    "MAX_SPLITS",
    "NUMERIC_KEYS",
    "SCHEMES",
    "STOP_SHARE",
    "CVRun",
    "Pool",
    "candidate_table",
    "cross_validate",
    "holdout",
    "kfold",
    "leave_p_out",
    "make_folds",
    "make_pool",
    "parse_grid",
    "parse_values",
    "repeated",
    "run_cv",
    "search",
]
