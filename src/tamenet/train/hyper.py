"""The recipe's per-member numbers as tensors [M]: a grid is just another member axis."""

from __future__ import annotations

import torch

from ..config import Recipe, RecipeError, member_fields, population_size

HYPER_FIELDS: dict[str, tuple[str, ...]] = {f.hyper: tuple(f.path.split(".")) for f in member_fields()}
"""Hyper-parameter name -> its place in the recipe, from the recipe's `PerMember` fields (`config.member_fields`)."""


def _get(recipe: Recipe, path: tuple[str, ...]):
    value = recipe
    for part in path:
        value = getattr(value, part)
    return value


def member_values(value, members: int, where: str) -> list:
    """Broadcast a number or a list of 1 or M numbers to M values."""
    values = value if isinstance(value, list) else [value]
    if len(values) == 1:
        values = values * members
    if len(values) != members:
        raise RecipeError(f"{where}: expected 1 or {members} values (one per member), got {len(values)}")
    return values


def member_hyper(recipe: Recipe) -> dict[str, torch.Tensor]:
    """Every per-member hyper-parameter as a float32 tensor [M]."""
    members = population_size(recipe)
    return {
        name: torch.tensor(member_values(_get(recipe, path), members, ".".join(path)), dtype=torch.float32)
        for name, path in HYPER_FIELDS.items()
    }


def member_seeds(recipe: Recipe) -> list[int]:
    """One seed per member: `seed: 3` gives every member seed 3 (they differ only in their numbers)."""
    seeds = member_values(recipe.seed, population_size(recipe), "seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise RecipeError(f"seed: expected a non-negative integer or a list of them, got {s!r}")
    return [int(s) for s in seeds]


def member_table(recipe: Recipe) -> list[dict[str, float]]:
    """One row per member: its seed and every hyper-parameter that differs between members."""
    hyper = member_hyper(recipe)
    varying = [k for k, v in hyper.items() if len(set(v.tolist())) > 1]
    seeds = member_seeds(recipe)
    return [{"seed": seeds[m], **{k: float(hyper[k][m]) for k in varying}} for m in range(len(seeds))]
