"""The model-selection defaults and names the command line shows before anything heavy is imported.

They live here, in a module that imports nothing but the standard library, so that `tamenet cv --help`
and a mistaken option answer at once; `cv.py`, `splits.py`, `memory.py` and `trials.py` use them from here.
"""

from __future__ import annotations

from typing import Any

STOP_SHARE = 0.2
"""Share of each fold's training rows held out to decide early stopping (never the scored rows)."""

MAX_SPLITS = 1000
"""Leave-p-out refuses more splits than this by default: each split is one more model to train."""

MEMORY_ENV = "TAMENET_MAX_MEMORY"
"""Environment variable with the memory budget of a selection population (e.g. `2GB`)."""

BATCH = 8
"""Trials asked for (and trained as one population) at a time."""


def _optuna() -> Any:
    """The optuna module, imported on first use."""
    import optuna

    return optuna


SAMPLERS = {
    "random": lambda seed: _optuna().samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: _optuna().samplers.TPESampler(seed=seed, constant_liar=True),
}
"""Sampler name -> factory(seed)."""

PRUNERS = {
    "median": lambda epochs: _optuna().pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 10)),
    "none": lambda epochs: _optuna().pruners.NopPruner(),
}
"""Pruner name -> factory(epochs): `median` stops a trial whose best score so far is below the median
of the completed trials' scores at the same epoch (after a warm-up of a tenth of the epochs)."""
