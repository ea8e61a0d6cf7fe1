"""The torch-free table of recipe names equals the registries it stands for."""

import pytest

from tamenet.config import Recipe, RecipeError, parse
from tamenet.data.datasets import DATASETS, FILE_LOADERS
from tamenet.models import MODELS
from tamenet.names import RECIPE_NAMES, check_names
from tamenet.nn import ACTIVATIONS, NORMS
from tamenet.registry import lookup
from tamenet.train.optim import OPTIMIZERS

REGISTRIES = {"data.name": [*DATASETS, *FILE_LOADERS], "model.kind": list(MODELS),
              "model.activation": list(ACTIVATIONS), "model.norm": list(NORMS), "train.optimizer": list(OPTIMIZERS)}


def test_every_registry_is_listed_with_the_same_names_in_the_same_order():
    assert set(RECIPE_NAMES) == set(REGISTRIES)
    for path, names in REGISTRIES.items():
        assert list(RECIPE_NAMES[path]) == names, path


@pytest.mark.parametrize("path, bad", [("model.activation", "relux"), ("model.kind", "transformer"),
                                       ("model.norm", "batchy"), ("train.optimizer", "adamx")])
def test_an_unknown_name_gives_the_registrys_own_message(path, bad):
    section, key = path.split(".")
    with pytest.raises(RecipeError) as caught:
        check_names(parse(Recipe, {section: {key: bad}}))
    with pytest.raises(ValueError) as reference:
        lookup(dict.fromkeys(REGISTRIES[path]), bad, path)
    assert str(caught.value) == str(reference.value)
