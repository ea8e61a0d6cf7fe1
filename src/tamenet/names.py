"""The names a recipe may give, known without importing torch: what the command line checks first.

Each registry stays declared next to its code (`models.MODELS`, `nn.ACTIVATIONS`, `nn.NORMS`,
`train.optim.OPTIMIZERS`, `data.datasets.DATASETS` and `FILE_LOADERS`); this table repeats their
keys so that `tamenet train --set model.activation=relux` is refused before torch loads (a fraction
of a second instead of several). `tests/test_names.py` keeps the two equal, so a registry that gains
a name fails that test until the name is added here.
"""

from __future__ import annotations

import difflib
from typing import Any

from .config import RecipeError

RECIPE_NAMES: dict[str, tuple[str, ...]] = {
    "data.name": ("digits", "diabetes", "breast_cancer", "wine", "digits_masks", "mnist1d", "moons", "spirals",
                  "csv", "npz", "text", "sentiment", "audio"),
    "model.kind": ("mlp", "linear", "cnn", "resnet", "fcn"),
    "model.activation": ("sigmoid", "tanh", "relu", "leaky_relu", "gelu"),
    "model.norm": ("none", "batch", "layer", "instance", "group", "switch"),
    "train.optimizer": ("sgd", "rmsprop", "adam", "adamw"),
}
"""Dotted recipe key -> the names its registry holds, in the registry's order."""

_WHAT = {"data.name": "data set"}


def check_names(recipe: Any) -> None:
    """Refuse a name no registry holds, listing the valid ones and the closest (the message `registry.lookup` gives)."""
    for path, valid in RECIPE_NAMES.items():
        value: Any = recipe
        for part in path.split("."):
            value = getattr(value, part)
        if value not in valid:
            close = difflib.get_close_matches(str(value), list(valid), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RecipeError(f"unknown {_WHAT.get(path, path)} '{value}'{hint} (valid: {', '.join(valid)})")
