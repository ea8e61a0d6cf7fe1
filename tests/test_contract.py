"""The contract every registered name keeps: it trains in a population of two and survives a checkpoint round trip.

For each activation, norm, init, optimizer, penalty, constraint, dropout kind, weight norm, clipper,
schedule and model kind: one epoch of a two-member population (seeds 0 and 1) on `digits`, then

* both members' weights moved away from their initialization and every parameter stays finite;
* the run directory's `model.pt`, reloaded by `load_run`, gives exactly the outputs of the model in memory.

A completeness test fails when a registry gains a name that no case here exercises.
"""

from __future__ import annotations

import functools
import dataclasses

import pytest
import torch
from sklearn.datasets import load_digits

from tamenet.api import fit
from tamenet.config import ScheduleConfig, set_key
from tamenet.models import MODELS, WEIGHT_NORMS, build_model
from tamenet.nn import ACTIVATIONS, INITS, NORMS
from tamenet.nn.layers import DROPOUT_MODES
from tamenet.train.optim import OPTIMIZERS
from tamenet.transforms import CLIPPERS
from tamenet.trained import TrainedModel, load_run

SCHEDULES = next(f for f in dataclasses.fields(ScheduleConfig) if f.name == "kind").metadata["choices"]

BASE = {
    "name": "contract",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "widths": [16, 16], "channels": [4, 4], "blocks": 1},
    "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 256, "epochs": 1},
    "track": {"tensorboard": False, "plots": False, "checkpoint": True},
    "seed": [0, 1],
}

CASES: dict[str, dict] = {}
for name in MODELS:
    CASES[f"model:{name}"] = {"model.kind": name}
for name in ACTIVATIONS:
    CASES[f"activation:{name}"] = {"model.activation": name}
for name in NORMS:
    if name != "none":
        CASES[f"norm:{name}"] = {"model.norm": name, **({"model.kind": "cnn"} if name == "instance" else {})}
for name in INITS:
    CASES[f"init:{name}"] = {"model.init": name}
for name in OPTIMIZERS:
    CASES[f"optimizer:{name}"] = {"train.optimizer": name, "train.lr": 0.01, "train.weight_decay": 1e-3}
for name in WEIGHT_NORMS:
    if name != "none":
        CASES[f"weight_norm:{name}"] = {"model.weight_norm": name}
for name in CLIPPERS:
    CASES[f"clip:{name}"] = {"train.clip": {"by": name, "max": 0.5}}
for name in SCHEDULES:
    CASES[f"schedule:{name}"] = {"train.schedule": {"kind": name, "warmup_epochs": 0.5}}
for mode in DROPOUT_MODES:
    CASES[f"dropout:{mode}"] = {"model.dropout": [0.2, 0.5, 0.5], "model.dropout_mode": mode}
    CASES[f"dropout:{mode}:cnn"] = {"model.kind": "cnn", "model.dropout": 0.3, "model.dropout_mode": mode}
CASES.update({
    "penalty:l2_half": {"penalty.l2": [1e-3, 1e-2]},
    "penalty:l2_full": {"penalty.l2": 1e-3, "penalty.l2_form": "full"},
    "penalty:l1_proximal": {"penalty.l1": [1e-4, 1e-3]},
    "penalty:l1_subgradient": {"penalty.l1": 1e-3, "penalty.l1_mode": "subgradient"},
    "penalty:soft_sharing": {"penalty.soft_sharing": [0.0, 0.1],
                             "penalty.sharing_groups": [{"layer": "hidden.1.weight", "units": [0, 1, 2, 3]}]},
    "dropconnect": {"model.dropconnect": [0.1, 0.3]},
    "noise:input": {"train.input_noise": [0.0, 0.1]},
    "noise:hidden": {"model.hidden_noise": [0.05, 0.1]},
    "noise:weight": {"model.weight_noise": [0.0, 0.01]},
    "constraint:max_norm": {"constraints.max_norm": [1.0, 2.0]},
    "constraint:non_negative": {"constraints.non_negative": True},
    "constraint:mask": {"constraints.masks": [{"layer": "hidden.1.weight", "band": 2}]},
    "constraint:tied": {"model.widths": [16, 16, 16], "constraints.tied": [{"layers": ["hidden.1.weight", "hidden.2.weight"]}]},
    "residual:mlp": {"model.residual": True},
    "residual:cnn": {"model.kind": "cnn", "model.residual": True},
})


def _recipe(changes: dict) -> dict:
    return functools.reduce(lambda raw, change: set_key(raw, *change), changes.items(), BASE)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_name_trains_as_a_population_of_two_and_round_trips(case, tmp_path):
    raw = _recipe(CASES[case])
    result = fit(raw, out=tmp_path / "run")
    model = result.model
    assert model.members == 2
    init = build_model(result.recipe.model, n_in=result.data.n_features, n_out=result.data.n_outputs,
                       seeds=[0, 1], input_shape=result.data.image_shape)
    trained = dict(model.named_parameters())
    for name, start in init.named_parameters():
        assert torch.isfinite(trained[name]).all(), f"{case}: {name} is not finite"
    moved = [
        [float((trained[n][m] - p[m]).detach().abs().max()) for n, p in init.named_parameters() if n.endswith("weight") and p.dim() >= 3]
        for m in range(2)
    ]
    assert all(max(per_member) > 0 for per_member in moved), f"{case}: a member's weights did not move"

    reloaded = load_run(result.run_dir)
    X = load_digits().data[:50]
    in_memory = TrainedModel(model, result.recipe, reloaded.preprocessing)
    torch.testing.assert_close(reloaded.outputs(X), in_memory.outputs(X), rtol=0, atol=0)


def test_every_registered_name_has_a_contract_case():
    covered = {key for case in CASES.values() for key in case.items() if isinstance(key[1], str)}
    expected = {
        "model.kind": MODELS, "model.activation": ACTIVATIONS, "model.init": INITS, "train.optimizer": OPTIMIZERS,
        "model.dropout_mode": DROPOUT_MODES,
        "model.norm": [n for n in NORMS if n != "none"], "model.weight_norm": [n for n in WEIGHT_NORMS if n != "none"],
    }
    for key, names in expected.items():
        missing = [n for n in names if (key, n) not in covered]
        assert not missing, f"{key}: no contract case for {missing}"
    nested = {case["train.clip"]["by"] for case in CASES.values() if "train.clip" in case}
    assert nested == set(CLIPPERS)
    schedules = {case["train.schedule"]["kind"] for case in CASES.values() if "train.schedule" in case}
    assert schedules == set(SCHEDULES)
    constraints = {key for case in CASES.values() for key in case if key.startswith("constraints.")}
    assert constraints == {"constraints.max_norm", "constraints.non_negative", "constraints.masks", "constraints.tied"}


@pytest.mark.parametrize("key,value", [("dropconnect", 0.2), ("hidden_noise", [0.0, 0.1]), ("weight_noise", 0.01),
                                       ("weight_norm", "spectral")])
def test_dense_only_options_are_refused_for_convolutional_models(key, value):
    from tamenet.config import RecipeError
    from tamenet.recipes import load_recipe

    raw = _recipe({"model.kind": "cnn", f"model.{key}": value})
    with pytest.raises(RecipeError, match=f"model.{key}: acts on the dense layers of kind 'mlp' only, got kind 'cnn'"):
        load_recipe(raw)
