"""Any member as a plain PyTorch model (`tamenet.models.export_member`, `TrainedModel.to_torch`).

Every contract case (tests/test_contract.py) and a few more layer types train once per module (a
population of two, one epoch on `digits`); for each, both exported members give the population's
member outputs to 1e-5 (on standardized rows, and on raw rows through `to_torch`), and
`torch.export` accepts member 1 with a dynamic batch dimension. Exported models train, pickle,
reload and share nothing with the population.
"""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from test_contract import CASES, _recipe
from tamenet.api import fit
from tamenet.models import MLP, export_member
from tamenet.models.export import GroupNorm, InputMask, Residual, Scale, Standardize, SwitchNorm
from tamenet.trained import TrainedModel

pytestmark = pytest.mark.usefixtures("one_thread")

EXTRA_CASES: dict[str, dict] = {
    "inputs:mlp": {"model.input_features": [10, 30], "model.dropout": [0.1, 0.2, 0.2]},
    "inputs:cnn": {"model.kind": "cnn", "model.input_features": [20, 0]},
    "mlp:batch_after": {"model.norm": "batch", "model.norm_position": "after", "model.weight_norm": "spectral"},
    "mlp:switch_residual": {"model.norm": "switch", "model.residual": True, "model.residual_scale": 0.5},
    "cnn:head_flatten_avg": {"model.kind": "cnn", "model.readout": "flatten", "model.pool": "avg",
                             "model.head_widths": [12], "model.dropout": 0.2, "model.dropout_mode": "classic"},
    "cnn:batch": {"model.kind": "cnn", "model.norm": "batch", "model.residual": True},
    "cnn:layer": {"model.kind": "cnn", "model.norm": "layer", "model.norm_position": "after"},
    "cnn:group": {"model.kind": "cnn", "model.norm": "group", "model.pool_every": 2},
    "cnn:switch": {"model.kind": "cnn", "model.norm": "switch", "model.pool": "none"},
    "cnn:1d": {"model.kind": "cnn", "model.input_shape": [4, 16], "model.norm": "batch"},
    "resnet:batch": {"model.kind": "resnet", "model.norm": "batch", "model.channels": [4, 8], "model.dropout": 0.2},
    "resnet:1d_group": {"model.kind": "resnet", "model.input_shape": [1, 64], "model.norm": "group", "model.blocks": 2},
    "regression": {"data.name": "diabetes", "model.norm": "batch"},
}
ALL_CASES = {**CASES, **EXTRA_CASES}
RANDOM_IN_TRAINING = ("model.dropout", "model.dropconnect", "model.hidden_noise", "model.weight_noise")
DETERMINISTIC_TRAINING = sorted(  # spectral normalization's training pass takes a power-iteration step first
    case for case, changes in ALL_CASES.items()
    if not any(key in changes for key in RANDOM_IN_TRAINING) and changes.get("model.weight_norm") != "spectral"
)

RAW_X = load_digits().data[:50]
PLAIN = (Standardize, InputMask, Scale, Residual, SwitchNorm, GroupNorm)


@pytest.fixture(scope="module")
def trained():
    """case -> TrainedModel (population in eval mode, its preprocessing), each case trained once."""
    cache: dict[str, TrainedModel] = {}

    def get(case: str) -> TrainedModel:
        if case not in cache:
            raw = _recipe(ALL_CASES[case])
            raw = {**raw, "track": {**raw["track"], "checkpoint": False}}
            result = fit(raw)
            cache[case] = TrainedModel(result.model.eval(), result.recipe, result.data.preprocessing())
            cache[case].rows = result.data.X_test[:64]  # standardized rows the population sees
        return cache[case]

    return get


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_every_member_equals_the_population_member(case, trained):
    model = trained(case)
    population = model.model
    before = _state(population)
    raw = RAW_X if model.preprocessing["n_features"] == 64 else np.asarray(model.rows[:50]) * 2.0
    with torch.no_grad():
        reference = population(model.rows)
        reference_raw = model.outputs(raw)
    for m in range(population.members):
        member = export_member(population, m).eval()
        for name, module in member.named_modules():
            assert type(module).__module__.startswith("torch.nn.modules") or isinstance(module, PLAIN), (case, name)
        with torch.no_grad():
            torch.testing.assert_close(member(model.rows), reference[m], rtol=0, atol=1e-5)
            from_raw = model.to_torch(m).eval()(torch.as_tensor(raw, dtype=torch.float32))
            torch.testing.assert_close(from_raw, reference_raw[m], rtol=0, atol=1e-5)
    for key, value in _state(population).items():  # exporting changed nothing (spectral norm's sigma included)
        assert torch.equal(value, before[key]), f"{case}: export changed {key}"


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_torch_export_accepts_a_member_with_a_dynamic_batch(case, trained):
    member = trained(case).to_torch(1).eval()
    n_in = member[0].mean.numel()
    x = torch.randn(20, n_in) * 4 + 4
    program = torch.export.export(member, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    for rows in (x, torch.randn(7, n_in) * 4 + 4):
        with torch.no_grad():
            torch.testing.assert_close(program.module()(rows), member(rows), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", DETERMINISTIC_TRAINING)
def test_in_training_mode_a_member_normalizes_and_updates_its_statistics_as_the_population(case, trained):
    """Without dropout or noise a training-mode forward is deterministic: batch statistics, running
    averages (BatchNorm, SwitchNorm) and outputs agree with the population's member."""
    model = trained(case)
    population = copy.deepcopy(model.model).train()
    members = [export_member(population, m).train() for m in range(2)]
    with torch.no_grad():
        reference = population(model.rows)
        for m, member in enumerate(members):
            torch.testing.assert_close(member(model.rows), reference[m], rtol=0, atol=1e-5)
    stats = {n: b for n, b in population.named_buffers() if n.endswith(("running_mean", "running_var"))}
    for m, member in enumerate(members):
        ours = [b for n, b in member.named_buffers() if n.endswith(("running_mean", "running_var"))]
        assert len(ours) == len(stats)
        for theirs, mine in zip(stats.values(), ours):
            torch.testing.assert_close(mine, theirs[m], rtol=0, atol=1e-6)


def test_classic_dropout_is_the_mask_in_training_and_one_minus_p_at_test():
    p = torch.tensor(0.3)
    layers = nn.Sequential(nn.Dropout(float(p)), Scale(1.0 - p))
    x = torch.rand(2000, 8) + 0.5
    out = layers.train()(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept], rtol=1e-6, atol=0)  # 1/(1-p) undone: x * mask
    assert abs(float(kept.float().mean()) - 0.7) < 0.02
    assert torch.equal(layers.eval()(x), x * (1.0 - p))  # tamenet's test pass: x * (1 - p), bit for bit


def test_dropout_and_training_only_parts(trained):
    dropout = trained("dropout:classic").to_torch(1)
    assert [round(d.p, 6) for d in dropout.modules() if isinstance(d, nn.Dropout)] == [0.2, 0.5, 0.5]
    assert [round(float(s.factor), 6) for s in dropout.modules() if isinstance(s, Scale)] == [0.8, 0.5, 0.5]
    inverted = trained("dropout:inverted").to_torch(0)
    assert [round(d.p, 6) for d in inverted.modules() if isinstance(d, nn.Dropout)] == [0.2, 0.5, 0.5]
    assert not any(isinstance(s, Scale) for s in inverted.modules())
    for case in ("dropconnect", "noise:hidden", "noise:weight", "model:mlp"):
        kinds = [type(layer) for layer in trained(case).to_torch(1)]
        assert kinds == [Standardize, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear], case


def test_input_selection_is_a_mask_layer(trained):
    model = trained("inputs:mlp")
    for m, kept in enumerate((10, 30)):
        mask = model.to_torch(m)[1]
        assert isinstance(mask, InputMask) and int(mask.mask.sum()) == kept
        assert torch.equal(mask.mask, model.model.input_mask[m])


def test_an_exported_member_trains_and_is_independent_of_the_population(trained):
    model = trained("norm:batch")
    population = model.model
    before = _state(population)
    with torch.no_grad():
        reference = population(model.rows)
    member = model.to_torch(1).train()
    population_storage = {t.untyped_storage().data_ptr() for t in population.state_dict().values()}
    for name, param in member.named_parameters():
        assert param.requires_grad, name
        assert param.untyped_storage().data_ptr() not in population_storage, name
    x = torch.as_tensor(RAW_X, dtype=torch.float32)
    y = torch.as_tensor(load_digits().target[:50])
    loss = nn.functional.cross_entropy(member(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in member.parameters())
    optimizer = torch.optim.SGD(member.parameters(), lr=0.5)
    for _ in range(5):
        optimizer.zero_grad()
        loss_now = nn.functional.cross_entropy(member(x), y)
        loss_now.backward()
        optimizer.step()
    assert float(nn.functional.cross_entropy(member(x), y).detach()) < float(loss.detach())
    with torch.no_grad():
        for param in member.parameters():
            param.add_(1.0)
        torch.testing.assert_close(population(model.rows), reference, rtol=0, atol=0)
    for key, value in _state(population).items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("case", ["norm:switch", "model:resnet", "cnn:group", "dropout:classic:cnn"])
def test_an_exported_member_pickles_and_reloads(case, trained):
    member = trained(case).to_torch(0).eval()
    x = torch.as_tensor(RAW_X, dtype=torch.float32)
    with torch.no_grad():
        expected = member(x)
    buffer = io.BytesIO()
    torch.save(member, buffer)
    buffer.seek(0)
    for again in (pickle.loads(pickle.dumps(member)), torch.load(buffer, weights_only=False)):
        with torch.no_grad():
            assert torch.equal(again.eval()(x), expected)
        assert again.classes == member.classes and again.task == "classification" and again.member == 0


def test_labels_and_outputs_are_described(trained):
    digits = trained("model:mlp").to_torch(1)
    assert digits.task == "classification" and digits.classes == list(range(10)) and digits.member == 1
    assert digits.target_mean is None and "logits" in digits.outputs
    model = trained("regression")
    member = model.to_torch(1).eval()
    assert member.task == "regression" and member.classes is None and "standardized" in member.outputs
    raw = model.rows.numpy() * 0 + np.asarray(model.preprocessing["scaler"]["mean"])  # raw rows at the mean
    raw = raw + np.random.default_rng(0).normal(size=raw.shape) * np.asarray(model.preprocessing["scaler"]["std"])
    with torch.no_grad():
        values = member(torch.as_tensor(raw, dtype=torch.float32)).squeeze(-1) * member.target_std + member.target_mean
    np.testing.assert_allclose(values.numpy(), model.predict(raw, member=1)["value"], rtol=1e-5, atol=1e-4)
    plain = export_member(model.model, 0)
    assert plain.task is None and not any(isinstance(layer, Standardize) for layer in plain)


def test_a_users_module_is_exported_as_a_copy():
    net = nn.Sequential(nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10))
    recipe = _recipe({"seed": 0})
    result = fit({**recipe, "track": {**recipe["track"], "checkpoint": False}}, module=net)
    trained = TrainedModel(result.model.eval(), result.recipe, result.data.preprocessing())
    member = trained.to_torch().eval()
    assert isinstance(member[0], Standardize) and member[1] is not result.model.module
    with torch.no_grad():
        torch.testing.assert_close(member(torch.as_tensor(RAW_X, dtype=torch.float32)), trained.outputs(RAW_X)[0],
                                   rtol=0, atol=1e-5)
        member[1][0].weight.zero_()
    assert float(result.model.module[0].weight.detach().abs().sum()) > 0


class _Unknown(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_unknown_layers_and_populations_are_refused_by_name(trained):
    population = copy.deepcopy(trained("norm:layer").model)
    population.norms[1] = _Unknown()
    with pytest.raises(TypeError, match=r"cannot export the module 'norms.1' of type .*_Unknown"):
        export_member(population, 0)
    population = copy.deepcopy(trained("model:mlp").model)
    population.activation = nn.Sequential(nn.ReLU())
    with pytest.raises(TypeError, match=r"'activation' of type torch.nn.modules.container.Sequential"):
        export_member(population, 0)

    class Custom(MLP):
        pass

    subclass = copy.deepcopy(trained("model:mlp").model)
    subclass.__class__ = Custom
    with pytest.raises(TypeError, match="cannot export a population of type .*Custom"):
        export_member(subclass, 0)
    with pytest.raises(TypeError, match="expected a tamenet Population, got Linear"):
        export_member(nn.Linear(2, 2), 0)


def test_member_and_preprocessing_mistakes_say_what_was_expected(trained):
    model = trained("model:mlp")
    with pytest.raises(ValueError, match=r"expected a member index in \[0, 1\], got 2"):
        model.to_torch(2)
    with pytest.raises(ValueError, match=r"got -1"):
        export_member(model.model, -1)
    with pytest.raises(TypeError, match="expected the member as an integer index, got bool True"):
        export_member(model.model, True)
    with pytest.raises(TypeError, match="expected preprocessing to be the dict"):
        export_member(model.model, 0, preprocessing=[1, 2])
    with pytest.raises(ValueError, match="the preprocessing is for 13 inputs, the population takes 64"):
        export_member(model.model, 0, preprocessing={**model.preprocessing, "n_features": 13})
