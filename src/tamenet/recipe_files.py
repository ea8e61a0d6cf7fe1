"""Reading a recipe (a YAML file, a dict or the default job, plus `--set` overrides) without importing torch.

What is checked here needs only the recipe's own declarations (`config.py`): YAML syntax, a key
written twice, unknown keys (with the closest one suggested), types, ranges and fixed choices. The
names that registries declare next to the code (activations, norms, optimizers, model kinds) are
checked by `recipes.check_recipe`, which imports them. The command line runs this first, so a
mistaken recipe is refused at once (bench/bench_cli.py measures it).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .config import Recipe, RecipeError, parse, set_key

DEFAULT_RECIPE: dict[str, Any] = {
    "name": "digits-default",
    "data": {"name": "digits", "val": 0.3, "test": 0.2},
    "model": {
        "kind": "mlp",
        "widths": [1024, 1024],
        "activation": "relu",
        "norm": "batch",
        "dropout": [0.2, 0.5, 0.5],
        "init": "he_normal",
    },
    "penalty": {"l2": 1.0e-3},
    "train": {
        "optimizer": "adam",
        "lr": 1.0e-3,
        "batch_size": 64,
        "epochs": 100,
        "schedule": {"kind": "cosine", "warmup_epochs": 2},
        "clip": {"by": "norm", "max": 5.0},
        "early_stopping": {"monitor": "val_loss", "patience": 20},
    },
    "seed": 0,
}
"""The default job: a deliberately over-parameterized MLP on `digits` (1.1 million weights for 1,005
training images) kept in check by dropout, BatchNorm, an L2 penalty, clipping and early stopping."""

DEFAULT_INPUT_DROPOUT, DEFAULT_HIDDEN_DROPOUT = 0.2, 0.5
"""The default job's drop probabilities: its per-layer list is [input, hidden, ..., hidden] for any widths."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping (plain YAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # the constructor itself refuses an unhashable key
        if key in seen:
            raise RecipeError(f"line {key_node.start_mark.line + 1}: the key '{key}' is written twice in one "
                              f"mapping (first on line {seen[key] + 1}); expected each key once")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(text: str) -> Any:
    """YAML text as Python values, refusing duplicate keys (`RecipeError`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file as a dict; a clear error for a missing file, a folder, or a file that is not a YAML mapping."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError(f"recipe: expected a YAML recipe file, got the folder {path}")
    if not path.is_file():
        raise FileNotFoundError(f"recipe file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: expected a YAML text file (UTF-8), got bytes that are not text") from None
    try:
        raw = load_yaml(text)
    except RecipeError as err:
        raise RecipeError(f"{path}, {err}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping of recipe sections, got {type(raw).__name__}")
    return raw


def override_keys(overrides: list[str]) -> set[str]:
    """The dotted keys that `--set KEY=VALUE` items name."""
    return {item.partition("=")[0].strip() for item in overrides}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` strings; values are read as YAML (`0.1`, `[256, 256]`, `true`, `adam`)."""
    for item in overrides:
        if not isinstance(item, str):
            raise TypeError(f"overrides: expected strings KEY=VALUE, got {type(item).__name__} {item!r}")
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set: expected KEY=VALUE (e.g. train.lr=0.01), got '{item}'")
        try:
            value = load_yaml(text)
        except RecipeError as err:
            raise RecipeError(f"--set {key.strip()}: {err}") from None
        except yaml.YAMLError:
            value = text
        raw = set_key(raw, key.strip(), value)
    return raw


def default_job(overrides: list[str]) -> dict[str, Any]:
    """The default job's recipe dict with `overrides` applied, its defaults following what they change.

    Its per-layer dropout list follows `model.widths` ([input, hidden, ..., hidden]) unless
    `model.dropout` is set too (a kind other than `mlp` gets one number for every hidden layer or
    block); its name "digits-default" is dropped when `data.name` or `model.kind` changes, so the run
    folder is named after the data set and model instead.
    """
    raw = apply_overrides(copy.deepcopy(DEFAULT_RECIPE), overrides)
    keys = override_keys(overrides)
    model = raw.get("model")
    if isinstance(model, dict) and not any(k == "model.dropout" or k.startswith("model.dropout") or k == "model"
                                           for k in keys):
        widths = model.get("widths")
        if model.get("kind", "mlp") == "mlp" and isinstance(widths, list):
            model["dropout"] = [DEFAULT_INPUT_DROPOUT] + [DEFAULT_HIDDEN_DROPOUT] * len(widths)
        elif model.get("kind", "mlp") != "mlp":
            model["dropout"] = DEFAULT_HIDDEN_DROPOUT
    if "name" not in keys and keys & {"data.name", "data", "model.kind", "model"}:
        raw.pop("name", None)
    return raw


def raw_recipe(source: dict | str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The recipe dict of a dict, a YAML file or the default job (None), with `overrides` applied."""
    overrides = list(overrides or [])
    if source is None:
        return default_job(overrides)
    if isinstance(source, dict):
        return apply_overrides(source, overrides)
    if isinstance(source, (str, Path)):
        return apply_overrides(read_yaml(source), overrides)
    raise TypeError(f"recipe: expected a Recipe, a dict, a YAML file path or None, got {type(source).__name__}")


def parse_recipe(source: dict | str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """The typed recipe, checked for keys, types, ranges, choices and the registries' names (`names.py`)."""
    from .augment.config_text_audio import modal_augmentation
    from .names import check_names

    recipe = parse(Recipe, raw_recipe(source, overrides))
    check_names(recipe)
    modal_augmentation(recipe)  # a text or audio operation on data of another kind
    return recipe


def run_name(recipe: Recipe, suffix: str | None = None) -> str:
    """A run folder's stem: the recipe's name, else '<data set>-<model kind>' (plus '-<suffix>', e.g. 'cv')."""
    stem = recipe.name or f"{recipe.data.name}-{recipe.model.kind}"
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip(".-") or "run"
    return f"{stem}-{suffix}" if suffix else stem
