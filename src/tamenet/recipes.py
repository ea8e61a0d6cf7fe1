"""Reading recipes from YAML files, dicts and `--set key=value` overrides, and checking their names.

The default job (`tamenet train` with no recipe) is `DEFAULT_RECIPE`: a deliberately
over-parameterized MLP on `digits` (1.1 million weights for 1,005 training images) kept in check
by dropout, BatchNorm, an L2 penalty, clipping and early stopping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Recipe, RecipeError, parse, per_member_values, population_size, to_dict
from .models import MODELS
from .nn import ACTIVATIONS, NORMS, check_init
from .recipe_files import DEFAULT_RECIPE, apply_overrides, raw_recipe, read_yaml  # noqa: F401  (public here too)
from .registry import lookup
from .train.hyper import member_hyper, member_seeds
from .train.optim import OPTIMIZERS

def check_recipe(recipe: Recipe) -> Recipe:
    """Reject unknown names and inconsistent member counts before any work starts."""
    lookup(MODELS, recipe.model.kind, "model.kind")
    lookup(ACTIVATIONS, recipe.model.activation, "model.activation")
    lookup(NORMS, recipe.model.norm, "model.norm")
    if recipe.model.kind == "mlp" and recipe.model.norm == "instance":
        raise RecipeError(
            "model.norm: 'instance' normalizes over spatial positions, which an MLP's features do not have "
            "(use batch, layer, group or switch)"
        )
    if recipe.model.kind == "linear":
        hidden_only = {
            "dropconnect": recipe.model.dropconnect, "hidden_noise": recipe.model.hidden_noise,
            "weight_norm": recipe.model.weight_norm, "norm": recipe.model.norm, "residual": recipe.model.residual,
        }
        used = [k for k, v in hidden_only.items() if any(x not in (0, "none", False) for x in (v if isinstance(v, list) else [v]))]
        if used:
            raise RecipeError(
                f"model.{used[0]}: acts on hidden layers, which kind 'linear' has none of "
                f"(leave {', '.join('model.' + k for k in used)} at the default, or use kind 'mlp')"
            )
    elif recipe.model.kind != "mlp":
        dense_only = {
            "dropconnect": recipe.model.dropconnect, "hidden_noise": recipe.model.hidden_noise,
            "weight_noise": recipe.model.weight_noise, "weight_norm": recipe.model.weight_norm,
        }
        used = [k for k, v in dense_only.items() if any(x not in (0, "none") for x in (v if isinstance(v, list) else [v]))]
        if used:
            raise RecipeError(
                f"model.{used[0]}: acts on the dense layers of kind 'mlp' only, got kind '{recipe.model.kind}' "
                f"(leave {', '.join('model.' + k for k in used)} at the default)"
            )
    lookup(OPTIMIZERS, recipe.train.optimizer, "train.optimizer")
    try:
        check_init(recipe.model.init)
    except ValueError as err:
        raise RecipeError(f"model.init: {err}") from None
    population_size(recipe)
    member_hyper(recipe)
    member_seeds(recipe)
    return recipe


def load_recipe(source: Recipe | dict | str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """A checked `Recipe` from an object, a dict, a YAML file, or the default job (None)."""
    if isinstance(source, Recipe) and not overrides:
        return check_recipe(source)
    if isinstance(source, Recipe):
        return check_recipe(parse(Recipe, apply_overrides(to_dict(source), overrides or [])))
    return check_recipe(parse(Recipe, raw_recipe(source, overrides)))


# ----------------------------------------------------------------- recipe algebra: expanding and selecting members
def expand_members(recipe: Recipe, repeat: int) -> Recipe:
    """The recipe with every per-member list repeated `repeat` times element-wise: [a, b] -> [a, a, b, b].

    Member c * repeat + f is candidate c on fold f.
    """
    raw = to_dict(recipe)
    candidates = population_size(recipe)
    for path, value in per_member_values(recipe).items():
        if isinstance(value, list) and len(value) == candidates and path != "seed":
            set_path(raw, path, [v for v in value for _ in range(repeat)])
    raw["seed"] = [s for s in member_seeds(recipe) for _ in range(repeat)]  # M = candidates x repeat
    return check_recipe(parse(Recipe, raw))


def select_members(recipe: Recipe, ids: list[int]) -> Recipe:
    """The recipe of these members only: every per-member list of length M cut to `ids`, seeds listed."""
    raw = to_dict(recipe)
    members = population_size(recipe)
    for path, value in per_member_values(recipe).items():
        if isinstance(value, list) and len(value) == members and members > 1 and path != "seed":
            set_path(raw, path, [value[i] for i in ids])
    seeds = member_seeds(recipe)
    raw["seed"] = [seeds[i] for i in ids]
    return check_recipe(parse(Recipe, raw))


def set_path(raw: dict, path: str, value: Any) -> None:
    parts = path.replace("[", ".").replace("]", "").split(".")
    node = raw
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
