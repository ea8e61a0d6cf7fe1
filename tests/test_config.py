"""Recipes: parsing, errors that name the key, per-member lists, and the documented reference."""

import dataclasses
from pathlib import Path

import pytest

from tamenet.config import (
    DataConfig,
    Recipe,
    RecipeError,
    TrainConfig,
    parse,
    population_size,
    set_key,
    to_dict,
)
from tamenet.recipes import DEFAULT_RECIPE, apply_overrides, load_recipe, read_yaml

DOCS = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def test_defaults_round_trip_through_plain_dicts():
    recipe = parse(Recipe, {"train": {"lr": 0.01}, "model": {"widths": [8]}})
    assert recipe.train.lr == 0.01 and recipe.model.widths == [8]
    assert parse(Recipe, to_dict(recipe)) == recipe


def test_unknown_key_suggests_the_closest_valid_key():
    with pytest.raises(RecipeError, match=r"unknown recipe key 'train\.learning_rat'.*"):
        parse(Recipe, {"train": {"learning_rat": 0.1}})
    with pytest.raises(RecipeError, match=r"did you mean 'patience'"):
        parse(Recipe, {"train": {"early_stopping": {"patiance": 3}}})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"lr": "fast"}}, r"train\.lr: expected a number, got str 'fast'"),
        ({"train": {"epochs": 2.5}}, r"train\.epochs: expected an integer, got 2\.5"),
        ({"train": {"lr": -1.0}}, r"train\.lr: expected a value > 0\.0, got -1\.0"),
        ({"data": {"val": 1.5}}, r"data\.val: expected a value <= 1\.0, got 1\.5"),
        ({"model": {"residual": "yes"}}, r"model\.residual: expected true or false, got str 'yes'"),
        ({"train": {"clip": {"by": "norms"}}}, r"train\.clip\.by: unknown value 'norms' \(valid: none, norm"),
        ({"model": {"widths": 8}}, r"model\.widths: expected a list, got int 8"),
        ({"penalty": {"l2": [0.1, "x"]}}, r"penalty\.l2: expected a number, got str 'x'"),
        ({"train": 3}, r"train: expected a mapping"),
    ],
)
def test_bad_values_are_refused_with_expected_and_received(raw, message):
    with pytest.raises(RecipeError, match=message):
        parse(Recipe, raw)


def test_yaml_exponents_without_a_dot_are_numbers():
    assert parse(TrainConfig, {"lr": "1e-4"}).lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"model": {"activation": "relu6"}}, r"unknown model\.activation 'relu6'; did you mean 'relu'\?.*valid: sigmoid"),
        ({"train": {"optimizer": "adamax"}}, r"unknown train\.optimizer 'adamax'.*valid: sgd, rmsprop, adam, adamw"),
        ({"model": {"norm": "batchnorm"}}, r"unknown model\.norm 'batchnorm'"),
        ({"model": {"init": "zeros"}}, r"symmetry|same gradient"),
        ({"model": {"kind": "transformer"}}, r"unknown model\.kind 'transformer'"),
    ],
)
def test_unknown_names_list_the_valid_ones(raw, message):
    with pytest.raises(ValueError, match=message):
        load_recipe(raw)


def test_per_member_lists_define_the_population_size():
    assert population_size(parse(Recipe, {})) == 1
    assert population_size(parse(Recipe, {"penalty": {"l2": [0, 1, 2]}, "train": {"lr": [0.1]}})) == 3
    assert population_size(parse(Recipe, {"seed": [0, 1], "model": {"dropout": [0.0, [0.1, 0.2], 0.5]}})) == 2
    with pytest.raises(RecipeError, match=r"same length M; got .*penalty\.l2 has 3.*train\.lr has 2"):
        population_size(parse(Recipe, {"penalty": {"l2": [0, 1, 2]}, "train": {"lr": [0.1, 0.2]}}))


def test_bad_seeds_and_batch_sizes_are_refused():
    with pytest.raises(RecipeError, match=r"seed: expected a non-negative integer"):
        load_recipe({"seed": "abc"})
    with pytest.raises(RecipeError, match=r"model\.dropout\[1\]: expected a drop probability in \[0, 1\), got 1\.5"):
        from tamenet.models import resolve_dropout

        resolve_dropout(parse(Recipe, {"model": {"dropout": [0.0, 1.5, 0.1]}}).model, 1)


def test_overrides_read_values_as_yaml_and_reject_malformed_items():
    raw = apply_overrides({}, ["train.lr=0.5", "model.widths=[4, 4]", "train.nesterov=true", "train.optimizer=sgd"])
    recipe = parse(Recipe, raw)
    assert (recipe.train.lr, recipe.model.widths, recipe.train.nesterov) == (0.5, [4, 4], True)
    with pytest.raises(RecipeError, match=r"--set: expected KEY=VALUE"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(RecipeError, match=r"'train' is not a section"):
        set_key({"train": 3}, "train.lr", 1)


def test_yaml_files_missing_or_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe file not found"):
        read_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        read_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="expected a mapping of recipe sections, got list"):
        read_yaml(listing)


def test_default_recipe_is_a_valid_recipe():
    recipe = load_recipe(None)
    assert recipe.data.name == "digits" and recipe.model.widths == DEFAULT_RECIPE["model"]["widths"]


def _all_keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _all_keys(type(default), f"{prefix}{f.name}.")
        else:
            yield prefix, f.name


def test_every_recipe_key_is_documented_in_the_reference():
    text = DOCS.read_text()
    missing = [
        p + name for p, name in _all_keys(Recipe) if f"`{name}`" not in text and f"`{p.split('.')[-2] + '.' if p else ''}{name}`" not in text
    ]
    assert not missing, f"docs/recipes.md does not document: {missing}"


def test_data_config_choices_are_checked():
    with pytest.raises(RecipeError, match=r"data\.task: unknown value 'classify'"):
        parse(DataConfig, {"task": "classify"}, "data")
