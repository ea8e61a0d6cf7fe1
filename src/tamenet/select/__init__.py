"""Model selection at population speed: validation schemes, cross-validation, grid and Optuna search,
nested cross-validation, chunks of members within a memory budget (B1-B3, X1, X2)."""

from .cv import STOP_SHARE, CVRun, Pool, candidate_table, make_pool, run_cv
from .memory import MEMORY_ENV, estimate_memory, memory_budget
from .run import cross_validate, search
from .search import NUMERIC_KEYS, parse_grid, parse_values
from .splits import MAX_SPLITS, SCHEMES, holdout, kfold, leave_p_out, make_folds, repeated
from .trials import PRUNERS, SAMPLERS, parse_space, run_trials

__all__ = [
    "MAX_SPLITS",
    "MEMORY_ENV",
    "NUMERIC_KEYS",
    "PRUNERS",
    "SAMPLERS",
    "SCHEMES",
    "STOP_SHARE",
    "CVRun",
    "Pool",
    "candidate_table",
    "cross_validate",
    "estimate_memory",
    "holdout",
    "kfold",
    "leave_p_out",
    "make_folds",
    "make_pool",
    "memory_budget",
    "parse_grid",
    "parse_space",
    "parse_values",
    "repeated",
    "run_cv",
    "run_trials",
    "search",
]
