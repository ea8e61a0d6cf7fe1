"""Model selection at population speed: validation schemes, cross-validation, grid and Optuna search,
nested cross-validation, chunks of members within a memory budget (B1-B3, X1, X2).

The names below are imported on first use (PEP 562), so that `tamenet.select.options` (the command
line's defaults and names) loads without torch.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ..lazy import lazy_attributes

EXPORTS: dict[str, str] = {
    "STOP_SHARE": "options", "MAX_SPLITS": "options", "MEMORY_ENV": "options", "PRUNERS": "options",
    "SAMPLERS": "options",
    "CVRun": "cv", "Pool": "cv", "candidate_table": "cv", "make_pool": "cv", "run_cv": "cv",
    "estimate_memory": "memory", "memory_budget": "memory",
    "cross_validate": "run", "search": "run",
    "NUMERIC_KEYS": "search", "parse_grid": "search", "parse_values": "search",
    "SCHEMES": "splits", "holdout": "splits", "kfold": "splits", "leave_p_out": "splits", "make_folds": "splits",
    "repeated": "splits",
    "parse_space": "trials", "run_trials": "trials",
}
"""Public name -> the submodule that defines it."""

__all__ = sorted(EXPORTS)


__getattr__, __dir__ = lazy_attributes(__name__, EXPORTS, globals())


class _Package(types.ModuleType):
    """`tamenet.select.search` is the function `run.search`, as when this package imported it eagerly: loading
    the submodule `search.py` (which the import system binds as an attribute of its package) does not hide it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "search" and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable as sys.modules["tamenet.select.search"]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
