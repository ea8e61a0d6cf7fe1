"""Convolutional populations (cnn, resnet): PyTorch references per member, populations against separate
runs, input shapes, recipe errors, initialization and clipping on kernels, cross-validation and search."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tamenet.api import fit
from tamenet.cli import main
from tamenet.config import ModelConfig, RecipeError
from tamenet.models import build_model, count_parameters, export_member
from tamenet.recipes import load_recipe
from tamenet.select import cross_validate, make_pool, run_cv, search
from tamenet.select.splits import kfold
from tamenet.trained import load_run
from tamenet.transforms import adaptive_clip

QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
NO_EARLY_STOP = {"patience": None, "restore_best": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(kind: str, n_in: int, members: int = 2, **keys) -> torch.nn.Module:
    cfg = ModelConfig(kind=kind, **keys)
    model = build_model(cfg, n_in=n_in, n_out=4, seeds=list(range(members))).double()
    with torch.no_grad():  # non-trivial norm parameters, so the reference must use member m's own
        for role in model.param_roles():
            if role.role != "weight":
                role.param.add_(0.1 * torch.randn_like(role.param))
    return model


def _bn(z: torch.Tensor, norm, m: int) -> torch.Tensor:
    return F.batch_norm(z, None, None, norm.weight[m], norm.bias[m], training=True)


def _conv(h: torch.Tensor, conv, m: int) -> torch.Tensor:
    fn = F.conv1d if conv.dims == 1 else F.conv2d
    bias = None if conv.bias is None else conv.bias[m]
    return fn(h, conv.weight[m], bias, stride=conv.stride, padding=conv.padding)


def _linear(h: torch.Tensor, linear, m: int) -> torch.Tensor:
    return h @ linear.weight[m] + linear.bias[m]


def _reference_cnn(model, x: torch.Tensor, m: int, *, pool: str, readout: str, residual: bool) -> torch.Tensor:
    """Member m's network written with torch.nn.functional on its own weights (training-mode BatchNorm)."""
    h = x.view(x.shape[0], *model.input_shape)
    pools = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d, ("avg", 1): F.avg_pool1d, ("avg", 2): F.avg_pool2d}
    for i, conv in enumerate(model.convs):
        z = torch.relu(_bn(_conv(h, conv, m), model.norms[i], m))
        h = h + z if residual and h.shape == z.shape else z
        if model.pooled[i]:
            h = pools[pool, model.dims](h, 2, 2)
    h = h.mean(dim=tuple(range(2, h.dim()))) if readout == "gap" else h.flatten(1)
    for linear in model.head:
        h = torch.relu(_linear(h, linear, m))
    return _linear(h, model.output, m)


@pytest.mark.parametrize("shape, pool, readout, residual", [
    ((1, 6, 6), "max", "flatten", True),
    ((2, 12), "avg", "gap", True),
    ((1, 6, 6), "avg", "gap", False),
])
def test_cnn_equals_a_torch_reference_member_by_member(shape, pool, readout, residual):
    n_in = math.prod(shape)
    model = _model("cnn", n_in, input_shape=list(shape), channels=[3, 3, 3], norm="batch", pool=pool,
                   pool_every=2, readout=readout, head_widths=[5], residual=residual)
    x = torch.randn(6, n_in, dtype=torch.float64)
    out = model(x)
    assert out.shape == (2, 6, 4)
    for m in range(2):
        torch.testing.assert_close(out[m], _reference_cnn(model, x, m, pool=pool, readout=readout, residual=residual))
    assert all(conv.bias is None for conv in model.convs)  # BatchNorm's beta replaces the bias


def _reference_resnet(model, x: torch.Tensor, m: int) -> torch.Tensor:
    h = x.view(x.shape[0], *model.input_shape)
    h = torch.relu(_bn(_conv(h, model.stem, m), model.stem_norm, m))
    for block in model.blocks:
        z = torch.relu(_bn(_conv(h, block.conv1, m), block.norm1, m))
        z = _bn(_conv(z, block.conv2, m), block.norm2, m)
        skip = h if block.shortcut is None else _bn(_conv(h, block.shortcut, m), block.shortcut_norm, m)
        h = torch.relu(z + skip)
    return _linear(h.mean(dim=tuple(range(2, h.dim()))), model.output, m)


@pytest.mark.parametrize("shape", [(2, 6, 6), (1, 20)])
def test_resnet_equals_a_torch_reference_member_by_member(shape):
    n_in = math.prod(shape)
    model = _model("resnet", n_in, channels=[3, 5], blocks=2, norm="batch", input_shape=list(shape))
    assert [b.shortcut is not None for b in model.blocks] == [False, False, True, False]  # stage 2 projects
    assert [b.conv1.stride for b in model.blocks] == [1, 1, 2, 1]
    x = torch.randn(5, n_in, dtype=torch.float64)
    out = model(x)
    for m in range(2):
        torch.testing.assert_close(out[m], _reference_resnet(model, x, m))


def test_parameter_count_of_one_member_follows_the_layer_formulas():
    model = build_model(ModelConfig(kind="cnn", channels=[4, 8], kernel_size=5, head_widths=[6]),
                        n_in=40, n_out=10, seeds=[0, 1, 2])
    expected = (1 * 4 * 5 + 4) + (4 * 8 * 5 + 8) + (8 * 6 + 6) + (6 * 10 + 10)
    assert count_parameters(model) == expected
    resnet = build_model(ModelConfig(kind="resnet", channels=[2, 4], norm="batch"), n_in=16, n_out=3,
                         seeds=[0], input_shape=(1, 4, 4))
    convs = (1 * 2 * 9) + 2 * (2 * 2 * 9) + (2 * 4 * 9 + 4 * 4 * 9 + 2 * 4)  # stem, block 1, block 2 + projection
    norms = 2 * (2 + 2 + 2 + 4 + 4 + 4)
    assert count_parameters(resnet) == convs + norms + (4 * 3 + 3)


# ------------------------------------------------------------------ initialization and clipping on kernels


@pytest.mark.parametrize("init, spread", [("he_normal", lambda fi, fo: math.sqrt(2 / fi)),
                                          ("xavier_uniform", lambda fi, fo: math.sqrt(2 / (fi + fo)))])
def test_kernel_init_counts_fan_in_and_fan_out_over_channels_and_positions(init, spread):
    model = build_model(ModelConfig(kind="cnn", channels=[48, 64], kernel_size=3, init=init),
                        n_in=64, n_out=10, seeds=[0, 1], input_shape=(1, 8, 8))
    weight = model.convs[1].weight.detach()  # [2, 64, 48, 3, 3]: fan_in 48 * 9, fan_out 64 * 9
    for m in range(2):
        assert float(weight[m].std()) == pytest.approx(spread(48 * 9, 64 * 9), rel=0.03)
    assert not torch.equal(weight[0], weight[1])  # each member from its own seed


def test_adaptive_clipping_takes_each_kernels_norm_over_input_channels_and_positions():
    model = build_model(ModelConfig(kind="cnn", channels=[3, 4]), n_in=36, n_out=2, seeds=[0, 1],
                        input_shape=(1, 6, 6))
    roles = model.param_roles()
    conv_role = next(r for r in roles if r.name == "convs.1.weight")
    assert conv_role.fan_in_dims == (2, 3, 4)
    grads = [torch.randn_like(r.param) for r in roles]
    clip = torch.tensor([0.05, 0.5])
    clipped = adaptive_clip(roles, grads, clip, eps=1e-3)
    i = roles.index(conv_role)
    w, g = conv_role.param.detach(), grads[i]
    for m in range(2):
        for unit in range(4):  # one output channel: its kernel over all input channels and positions
            bound = float(clip[m]) * max(float(w[m, unit].norm()), 1e-3)
            factor = min(1.0, bound / max(float(g[m, unit].norm()), 1e-6))
            torch.testing.assert_close(clipped[i][m, unit], g[m, unit] * factor)


# ------------------------------------------------------------------ populations = separate runs


def _member_history(history: list[dict], member: int) -> np.ndarray:
    return np.array([[r["epoch"], r["train_loss"], r["val_loss"]] for r in history if r["member"] == member])


def _assert_population_equals_separate_runs(population: dict, singles: list[dict]) -> None:
    pop = fit(population)
    assert pop.model.members == len(singles)
    for m, single in enumerate(singles):
        alone = fit(single)
        np.testing.assert_allclose(_member_history(pop.history, m), _member_history(alone.history, 0),
                                   rtol=1e-4, atol=1e-6, err_msg=f"member {m} history")
        state = {k: v for k, v in alone.model.state_dict().items() if v.dim() >= 1}
        for name, value in state.items():
            torch.testing.assert_close(pop.model.state_dict()[name][m], value[0], rtol=1e-4, atol=1e-5,
                                       msg=f"member {m}: {name}")


def test_cnn_population_of_seeds_dropouts_and_l2_equals_separate_runs():
    base = {
        "data": {"name": "mnist1d", "n_samples": 300},
        "model": {"kind": "cnn", "channels": [6, 6], "norm": "batch", "residual": True, "pool_every": 2},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 3, "early_stopping": NO_EARLY_STOP},
        "track": QUIET,
    }
    seeds, drops, l2 = [0, 1, 2], [0.0, 0.1, 0.3], [0.0, 1e-3, 1e-2]
    population = copy.deepcopy(base)
    population["seed"], population["penalty"] = seeds, {"l2": l2}
    population["model"]["dropout"] = [0.0, drops, drops]
    singles = []
    for s, p, lam in zip(seeds, drops, l2):
        single = copy.deepcopy(base)
        single["seed"], single["penalty"] = s, {"l2": lam}
        single["model"]["dropout"] = [0.0, p, p]
        singles.append(single)
    _assert_population_equals_separate_runs(population, singles)


def test_resnet_population_of_seeds_with_adaptive_clipping_equals_separate_runs():
    base = {
        "data": {"name": "digits"},
        "model": {"kind": "resnet", "channels": [4, 8], "norm": "batch", "dropout": 0.1},
        "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 64, "epochs": 2,
                  "clip": {"by": "adaptive", "max": 0.05}},
        "track": QUIET,
    }
    seeds = [0, 3]
    _assert_population_equals_separate_runs({**base, "seed": seeds}, [{**base, "seed": s} for s in seeds])


def test_cv_member_of_a_cnn_population_equals_its_candidate_trained_alone_on_its_fold():
    raw = {
        "data": {"name": "mnist1d", "n_samples": 200},
        "model": {"kind": "cnn", "channels": [4], "dropout": [0.0, 0.2]},
        "penalty": {"l2": [0.0, 1e-2]},
        "train": {"lr": 0.01, "batch_size": 32, "epochs": 2},
        "track": QUIET,
    }
    recipe = load_recipe(raw)
    pool = make_pool(recipe)
    assert pool.image_shape == (1, 40)
    folds = kfold(pool.y, k=2, seed=0)
    together = run_cv(recipe, pool, folds)
    for c, lam in enumerate([0.0, 1e-2]):
        alone = run_cv(load_recipe({**raw, "penalty": {"l2": lam}}), pool, [folds[1]])
        for quantity in ("loss", "accuracy"):
            assert together.scores["scored"][quantity][2 * c + 1] == pytest.approx(
                alone.scores["scored"][quantity][0], rel=1e-5, abs=1e-7)


# ------------------------------------------------------------------ cross-validation and search


def test_cross_validate_and_search_run_a_tiny_cnn_like_the_mlp(tmp_path):
    raw = {
        "data": {"name": "mnist1d", "n_samples": 200},
        "model": {"kind": "cnn", "channels": [4, 4], "head_widths": [8]},
        "train": {"lr": 0.01, "batch_size": 32, "epochs": 2},
        "track": {"tensorboard": False, "plots": False},
    }
    cv = cross_validate({**raw, "penalty": {"l2": [0.0, 1e-3]}}, folds=3)
    assert cv["folds"] == 3 and cv["members"] == 6 and len(cv["candidates"]) == 2
    assert all(0.0 <= row["cv_accuracy_mean"] <= 1.0 for row in cv["candidates"])
    found = search(raw, grid=["model.dropout=0,0.3", "penalty.l2=0,1e-3", "model.kernel_size=3,5"], folds=2,
                   halving=2, out=tmp_path / "search")
    assert len(found["candidates"]) == 8
    assert sum(row["dropped_at_epoch"] is not None for row in found["candidates"]) == 4  # halving cut conv members
    best = found["best"]
    assert best["model.kernel_size"] in (3, 5) and best["model.dropout"] in (0, 0.3)
    assert 0.0 <= found["refit"]["test"]["accuracy"] <= 1.0
    refit = load_run(tmp_path / "search" / "refit")
    assert refit.recipe.model.kind == "cnn"
    if best["model.dropout"] == 0.3:  # input kept at 0, both blocks and the head layer set
        assert refit.recipe.model.dropout == [0.0, 0.3, 0.3, 0.3]


def test_a_dropout_grid_value_covers_every_block_and_head_layer():
    from tamenet.select.search import parse_grid, population_recipe, split_grid

    recipe = load_recipe({"model": {"kind": "cnn", "channels": [4, 4, 4], "head_widths": [8]}})
    structures, numbers = split_grid(recipe, parse_grid(["model.dropout=0,0.3"]))
    population = population_recipe(recipe, structures[0], numbers)
    assert population.model.dropout == [0.0] + [[0, 0.3]] * 4
    resnet = load_recipe({"model": {"kind": "resnet", "channels": [4, 8], "blocks": 2}})
    structures, numbers = split_grid(resnet, parse_grid(["model.dropout=0.1,0.2"]))
    assert len(population_recipe(resnet, structures[0], numbers).model.dropout) == 1 + 4


# ------------------------------------------------------------------ input shapes and recipe errors


def test_input_shape_comes_from_the_data_set_unless_the_recipe_gives_one():
    small = {"train": {"epochs": 1}, "track": QUIET}
    digits = fit({**small, "model": {"kind": "cnn", "channels": [2]}})
    assert digits.model.input_shape == (1, 8, 8) and digits.model.dims == 2
    signal = fit({**small, "data": {"name": "mnist1d", "n_samples": 100}, "model": {"kind": "resnet", "channels": [2]}})
    assert signal.model.input_shape == (1, 40) and signal.model.dims == 1
    rows = fit({**small, "model": {"kind": "cnn", "channels": [2]}}, X=np.random.randn(60, 12), y=np.arange(60) % 2)
    assert rows.model.input_shape == (1, 12)  # plain rows: one-channel signals
    own = fit({**small, "model": {"kind": "cnn", "channels": [2], "input_shape": [4, 16]}})
    assert own.model.input_shape == (4, 16) and own.model.dims == 1


def test_saved_cnn_reloads_with_its_shape_and_predicts_the_same(tmp_path):
    result = fit({"model": {"kind": "cnn", "channels": [3]}, "train": {"epochs": 1},
                  "track": {"tensorboard": False, "plots": False}}, out=tmp_path / "run")
    trained = load_run(tmp_path / "run")
    assert trained.model.input_shape == (1, 8, 8)
    X = result.data.X_test[:20]
    result.model.eval()
    torch.testing.assert_close(trained.model(X), result.model(X))


@pytest.mark.parametrize("model, message", [
    ({"kind": "cnn", "input_shape": [1, 7, 7]}, r"input_shape: \[1, 7, 7\] holds 49 values, but the data have 64"),
    ({"kind": "cnn", "input_shape": [64]}, r"expected \[C, L\] .* or \[C, H, W\]"),
    ({"kind": "cnn", "kernel_size": 4}, "kernel_size: expected an odd size"),
    ({"kind": "resnet", "channels": []}, "channels: expected a non-empty list"),
    ({"kind": "cnn", "channels": [4, 4, 4, 4]}, r"block 4 would pool an input of size \[1, 1\]"),
    ({"kind": "resnet", "channels": [2, 2, 2, 2, 2]}, r"stage 5 would halve an input of size \[1, 1\]"),
    ({"kind": "cnn", "channels": [4, 4], "dropout": [0.1, 0.2]}, r"a list of 3 \(input and 2 hidden layers or blocks\)"),
    ({"kind": "cnn", "pool": "min"}, "model.pool: unknown value 'min' .*valid: none, max, avg"),
    ({"kind": "cnn", "readout": "mean"}, "model.readout: unknown value 'mean'"),
])
def test_recipe_mistakes_say_what_was_expected(model, message):
    with pytest.raises(RecipeError, match=message):
        fit({"model": model, "train": {"epochs": 1}, "track": QUIET})


def test_cli_reports_a_shape_mismatch_in_one_line_with_exit_code_2(capsys):
    code = main(["train", "--set", "model.kind=cnn", "--set", "model.input_shape=[2, 40]", "--set", "train.epochs=1"])
    assert code == 2
    assert "holds 80 values, but the data have 64 features per row" in capsys.readouterr().err


def test_instance_norm_is_allowed_for_convolutional_models_and_refused_for_the_mlp():
    result = fit({"model": {"kind": "cnn", "channels": [4], "norm": "instance"}, "train": {"epochs": 1}, "track": QUIET})
    assert type(result.model.norms[0]).__name__ == "InstanceNorm"
    with pytest.raises(RecipeError, match="instance"):
        load_recipe({"model": {"kind": "mlp", "norm": "instance"}})


@pytest.mark.parametrize("name, n_in, shape, dims", [("cnn_mnist1d", 40, (1, 40), 1), ("resnet_digits", 64, (1, 8, 8), 2)])
def test_example_recipes_build_their_models_from_the_data_sets_shape(name, n_in, shape, dims):
    from pathlib import Path

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml")
    model = build_model(recipe.model, n_in=n_in, n_out=10, seeds=[0], input_shape=shape)
    assert model.dims == dims and model(torch.randn(3, n_in)).shape == (1, 3, 10)


def test_per_block_kernels_and_strides_equal_the_mnist1d_notebooks_torch_network():
    """kernel_size [5, 3, 3], stride 2, flatten: member m is Conv1d(1,25,5,2,pad 2) -> Conv1d(25,25,3,2,1) x 2 -> Linear(125)
    (with BatchNorm, as the reference helper writes every block)."""
    model = _model("cnn", 40, input_shape=[1, 40], channels=[25, 25, 25], kernel_size=[5, 3, 3], stride=2, norm="batch",
                   pool="none", readout="flatten")
    assert [(c.kernel_size, c.stride, c.padding) for c in model.convs] == [(5, 2, 2), (3, 2, 1), (3, 2, 1)]
    assert model.output.in_features == 25 * 5  # 40 -> 20 -> 10 -> 5 positions
    x = torch.randn(7, 40, dtype=torch.float64)
    out = model(x)
    for m in range(2):
        torch.testing.assert_close(out[m], _reference_cnn(model, x, m, pool="none", readout="flatten", residual=False))
    residual = _model("cnn", 40, input_shape=[1, 40], channels=[4, 4, 4], kernel_size=[5, 3, 3], stride=[2, 1, 2],
                      norm="batch", pool="none", readout="flatten", residual=True).eval()
    for m in range(2):  # exported: a skip only around the stride-1 block, whose shapes agree
        plain = export_member(residual, m).double().eval()
        torch.testing.assert_close(plain(x), residual(x)[m])


@pytest.mark.parametrize("model, message", [
    ({"kind": "cnn", "channels": [4, 4], "kernel_size": [3, 3, 3]}, r"kernel_size: expected one number per conv block \(2"),
    ({"kind": "cnn", "channels": [4, 4], "stride": [1]}, r"stride: expected one number per conv block \(2"),
    ({"kind": "cnn", "channels": [4, 4], "kernel_size": [3, 4]}, "kernel_size: expected an odd size"),
    ({"kind": "resnet", "kernel_size": [3, 3]}, "per-block lists are for kind 'cnn'"),
    ({"kind": "resnet", "stride": 2}, "model.stride: expected 1 for kind 'resnet'"),
    ({"kind": "cnn", "stride": 0}, r"model.stride: expected a value >= 1"),
])
def test_per_block_kernel_and_stride_mistakes_say_what_was_expected(model, message):
    with pytest.raises(RecipeError, match=message):
        fit({"model": model, "train": {"epochs": 1}, "track": QUIET})
