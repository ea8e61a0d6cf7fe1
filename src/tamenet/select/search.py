"""Grid search with cross-validation at population speed (B3, X1, C6).

Numeric hyper-parameters (L1/L2 strength, dropout, noise, learning rate, clipping, weight decay,
momentum, seeds) become member axes of one population: every (candidate, fold) pair trains side by
side. Structural choices (widths, activation, norm, optimizer, ...) run as separate populations.
The best candidate is refit on all the pool's rows and scored on the test split, touched once.
Random and Bayesian search (Optuna) live in `trials.py`; nested cross-validation in `run.py`.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import numpy as np
import yaml

from ..config import Recipe, RecipeError, member_fields, parse, per_member_values, set_key, to_dict
from ..models import dropout_layers
from ..recipes import check_recipe
from .cv import CVRun, Pool, candidate_table, run_cv
from .splits import Fold

NUMERIC_KEYS = (*(f.path for f in member_fields()), "model.dropout", "seed")
"""Grid keys that become member axes of one population (every `PerMember` field of the recipe, dropout and the
seed); any other key makes separate populations."""
SCORE_PREFIXES = ("train_", "cv_", "best_epochs", "diverged_folds", "dropped_at_epoch", "epochs_trained")


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads `1e-4` (no dot) as a string: numeric strings become floats, at any depth."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def parse_values(text: str) -> list[Any]:
    """`0,0.2,0.5` (a list), `1e-6:1e6:13` (13 values log-spaced from 1e-6 to 1e6) or a YAML list `[[64], [128, 128]]`."""
    text = text.strip()
    if text.startswith("["):
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError:
            values = None
        if not isinstance(values, list) or not values:
            raise RecipeError(f"--grid: expected a non-empty YAML list of values, got {text!r}")
        return _numbers(values)
    parts = text.split(":")
    if len(parts) not in (1, 3):  # YAML would read `1:2` as the base-60 integer 62
        raise RecipeError(f"--grid: a log range is LOW:HIGH:COUNT (e.g. 1e-6:1e6:13), got {text!r}")
    if len(parts) == 3:
        try:
            low, high, count = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise RecipeError(f"--grid: a log range is LOW:HIGH:COUNT with numbers, got {text!r}") from None
        if low <= 0 or high <= 0 or count < 2:
            raise RecipeError(f"--grid: a log range needs LOW > 0, HIGH > 0 and COUNT >= 2, got {text!r}")
        return [float(v) for v in np.logspace(math.log10(low), math.log10(high), count)]
    try:
        values = [_numbers(yaml.safe_load(v)) for v in text.split(",") if v.strip()]
    except yaml.YAMLError:
        raise RecipeError(f"--grid: expected comma-separated values (e.g. 0,0.2,0.5), got {text!r}") from None
    if not values:
        raise RecipeError(f"--grid: expected values after '=', got {text!r}")
    return values


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`KEY=VALUES` strings -> {dotted key: values}, in the given order."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--grid: expected KEY=VALUES (e.g. penalty.l2=1e-6:1e6:13), got {item!r}")
        grid[key.strip()] = parse_values(text)
    return grid


def split_grid(recipe: Recipe, grid: dict[str, list[Any]]) -> tuple[list[dict], list[dict]]:
    """(structural combinations, numeric combinations) of the grid's cartesian product."""
    for key, values in grid.items():
        if key in NUMERIC_KEYS and any(isinstance(v, (list, dict)) for v in values):
            raise RecipeError(f"--grid {key}: expected plain numbers, got {values}")
        if key in per_member_values(recipe) and isinstance(per_member_values(recipe)[key], list):
            raise RecipeError(f"--grid {key}: the recipe already gives a list for this key; give it as a number")
    numeric = {k: v for k, v in grid.items() if k in NUMERIC_KEYS}
    structural = {k: v for k, v in grid.items() if k not in NUMERIC_KEYS}

    def product(axes: dict[str, list[Any]]) -> list[dict]:
        keys = list(axes)
        return [dict(zip(keys, combo)) for combo in itertools.product(*axes.values())] or [{}]

    return product(structural), product(numeric)


def _with_grid_values(recipe: Recipe, values: dict[str, Any]) -> Recipe:
    """The recipe with each grid key set; a `model.dropout` value applies to every hidden layer (input kept)."""
    raw = to_dict(recipe)
    # dropout last: it takes its layer count from the widths or channels, which may be grid keys too
    for key, value in sorted(values.items(), key=lambda item: item[0] == "model.dropout"):
        if key == "model.dropout":
            current = recipe.model.dropout
            input_p = current[0] if isinstance(current, list) else 0.0
            value = [input_p] + [value] * (dropout_layers(parse(Recipe, raw).model) - 1)
        raw = set_key(raw, key, value)
    return check_recipe(parse(Recipe, raw))


def population_recipe(recipe: Recipe, structure: dict, numbers: list[dict]) -> Recipe:
    """The recipe of one structural combination with its numeric candidates as members (lists of length C)."""
    shaped = _with_grid_values(recipe, structure)
    if not numbers[0]:
        return shaped
    return _with_grid_values(shaped, {key: [n[key] for n in numbers] for key in numbers[0]})


def best_index(table: list[dict], metric: str) -> int:
    """The candidate with the best mean cross-validated metric (ties: the first); diverged ones never win,
    and after successive halving only the candidates that trained to the end compete."""
    sign = 1.0 if metric == "accuracy" else -1.0
    scores = [
        sign * row[f"cv_{metric}_mean"]
        if math.isfinite(row[f"cv_{metric}_mean"]) and row.get("dropped_at_epoch") is None else -math.inf
        for row in table
    ]
    return int(np.argmax(scores))


def run_search(
    recipe: Recipe, grid: dict[str, list[Any]], pool: Pool, folds: list[Fold], *, stop_share: float,
    halving_eta: int | None = None, callbacks=None, max_memory: str | int | None = None, spread=None,
    side_by_side: int | None = None,
) -> tuple[list[dict], list[CVRun]]:
    """Every candidate's cross-validated scores: one population per structural combination."""
    structures, numbers = split_grid(recipe, grid)
    rows: list[dict] = []
    runs: list[CVRun] = []
    for structure in structures:
        population = population_recipe(recipe, structure, numbers)
        run = run_cv(population, pool, folds, stop_share=stop_share, halving_eta=halving_eta, callbacks=callbacks,
                     max_memory=max_memory, spread=spread, side_by_side=side_by_side)
        runs.append(run)
        for c, row in enumerate(candidate_table(run)):
            scores = {k: v for k, v in row.items() if k.startswith(SCORE_PREFIXES)}
            rows.append({"population": len(runs) - 1, **structure, **numbers[c], **scores})
    for i, row in enumerate(rows):
        row["candidate"] = i
    return rows, runs


def candidate_recipe(recipe: Recipe, row: dict, grid: dict[str, list[Any]]) -> Recipe:
    """The recipe of one candidate as a single run (every grid key set to the candidate's value)."""
    return _with_grid_values(recipe, {key: row[key] for key in grid})
