"""The dropout family (D1-D4) and weight norms as recipe options (F3): classic vs inverted dropout,
DropConnect, noise on hidden units and weights, Monte-Carlo dropout prediction."""

from __future__ import annotations

import functools
import csv
import math

import numpy as np
import pytest
import torch

from tamenet.api import fit
from tamenet.cli import main
from tamenet.config import RecipeError, set_key
from tamenet.data import SplitData
from tamenet.models import MLP, WEIGHT_NORMS, Wrapped
from tamenet.nn import (
    DropConnect,
    Dropout,
    GaussianNoise,
    Linear,
    MemberRandom,
    dropout,
    dropout_masked,
    minmax_weight,
    standardize_weight,
)
from tamenet.predict import MC_STEP, mc_outputs, mc_predict, mc_sampling, mc_summary
from tamenet.recipes import load_recipe
from tamenet.select.search import NUMERIC_KEYS, population_recipe, split_grid
from tamenet.trained import load_run

QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
BASE = {
    "data": {"name": "moons", "n_samples": 200, "noise": 0.3},
    "model": {"widths": [16, 16], "activation": "relu"},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 4},
    "track": QUIET,
    "seed": 0,
}


def _with(recipe: dict, **changes) -> dict:
    return functools.reduce(lambda raw, change: set_key(raw, *change), changes.items(), recipe)


def _within(mean: torch.Tensor, expected: torch.Tensor, std: torch.Tensor, n: int, k: float = 5.0) -> bool:
    """|mean - expected| <= k standard errors (std / sqrt(n)), element-wise."""
    return bool(torch.all((mean - expected).abs() <= k * std / math.sqrt(n) + 1e-9))


# ------------------------------------------------------------------ D1: classic vs inverted


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_expected_training_output_of_dropout_equals_its_test_output(mode):
    p = [0.2, 0.6]
    drop = Dropout(p, random=MemberRandom([1, 2]), stream=0, mode=mode)
    x = torch.randn(1, 6) + 1.0
    n = 40_000
    train_out = drop.train()(x.expand(n, 6))  # n independent masks of the same row: [M, n, 6]
    test_out = drop.eval()(x.expand(2, 1, 6))[:, 0]
    for m, pm in enumerate(p):
        # keep / (1 - p) (inverted) or keep (classic) times x: std |x| sqrt(p (1-p)) / (1-p)^[inverted]
        scale = 1.0 / (1 - pm) if mode == "inverted" else 1.0
        std = x[0].abs() * math.sqrt(pm * (1 - pm)) * scale
        assert _within(train_out[m].double().mean(0), test_out[m].double(), std.double(), n)


def test_classic_and_inverted_dropout_relate_by_the_keep_probability():
    p = torch.tensor([0.25, 0.5])
    x = torch.randn(2, 5, 7)
    random = MemberRandom([3, 4])
    inv, cla = (Dropout(p.tolist(), random=random, stream=1, mode=m) for m in ("inverted", "classic"))
    random.step = 9
    # same mask: the inverted training output is the classic one scaled by 1/(1-p)
    torch.testing.assert_close(inv.train()(x), cla.train()(x) / (1 - p).view(2, 1, 1))
    # at test: inverted is the identity, classic multiplies by the keep probability 1 - p
    assert torch.equal(inv.eval()(x), x)
    torch.testing.assert_close(cla.eval()(x), x * (1 - p).view(2, 1, 1))


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_network_expected_training_output_equals_test_output_for_both_modes(mode):
    # dropout on the last hidden layer only: the output is linear in the dropped units, so
    # E[training output] equals the test output exactly; checked over 20,000 masks per row.
    net = MLP(3, 2, widths=[8], seeds=[5], dropout=[[0.0], [0.4]], dropout_mode=mode)
    x = torch.randn(4, 3)
    n = 20_000
    out = net.train()(x.repeat(n, 1)).view(n, 4, 2).double()
    test = net.eval()(x)[0].double()
    assert _within(out.mean(0), test, out.std(0), n)


def test_dropout_mode_is_a_recipe_option_and_classic_trains():
    result = fit(_with(BASE, **{"model.dropout": 0.3, "model.dropout_mode": "classic"}))
    assert all(d.mode == "classic" for d in result.model.dropouts)
    assert result.summary["test"]["accuracy"] > 0.7
    with pytest.raises(RecipeError, match="model.dropout_mode: unknown value 'keep'"):
        load_recipe(_with(BASE, **{"model.dropout_mode": "keep"}))


# ------------------------------------------------------------------ D3: DropConnect


def test_dropconnect_keep_rate_scaling_expectation_and_exact_weights_at_test():
    p = [0.0, 0.3, 0.7]
    random = MemberRandom([0, 1, 2])
    dc = DropConnect(p, random=random, stream=3000).train()
    W = torch.randn(3, 40, 50)
    steps, acc = 400, torch.zeros_like(W, dtype=torch.float64)
    for step in range(steps):
        random.step = step
        out = dc(W)
        acc += out.double()
        if step == 0:
            first = out
    for m, pm in enumerate(p):
        kept = first[m] != 0
        assert abs(kept.double().mean().item() - (1 - pm)) <= 5 * math.sqrt(pm * (1 - pm) / W[m].numel()) + 1e-12
        torch.testing.assert_close(first[m][kept], W[m][kept] / (1 - pm))
        std = W[m].abs().double() * math.sqrt(pm / (1 - pm))
        assert _within(acc[m] / steps, W[m].double(), std, steps)
    assert torch.equal(first[0], W[0])  # p = 0 keeps every weight
    random.step = 1
    assert not torch.equal(dc(W)[1], first[1])  # a fresh mask per batch
    assert dc.eval()(W) is W  # at test: the weights themselves, their exact expectation


def test_dropconnect_member_mask_equals_a_population_of_one():
    seeds, p = [4, 9], [0.5, 0.2]
    pop = DropConnect(p, random=MemberRandom(seeds), stream=3001).train()
    pop.random.step = 12
    W = torch.randn(2, 6, 5)
    out = pop(W)
    for m, seed in enumerate(seeds):
        single = DropConnect([p[m]], random=MemberRandom([seed]), stream=3001).train()
        single.random.step = 12
        assert torch.equal(out[m], single(W[m : m + 1])[0])


def test_linear_with_dropconnect_uses_the_masked_weight_and_its_gradient():
    random = MemberRandom([0])
    layer = Linear(1, 4, 3).set_weight_transforms(dropconnect=DropConnect([0.5], random=random, stream=7))
    torch.nn.init.normal_(layer.weight)
    x = torch.randn(1, 5, 4)
    random.step = 2
    mask = random.uniform(7, (4, 3))[0] >= 0.5
    out = layer.train()(x)
    torch.testing.assert_close(out, x @ (layer.weight * mask / 0.5) + layer.bias.unsqueeze(1))
    out.sum().backward()
    # d/dW of sum(x @ (W * mask / (1-p))) = (x^T 1) * mask / (1-p): zero where a weight was dropped
    expected = (x[0].sum(0).view(4, 1) * torch.ones(1, 3)) * mask / 0.5
    torch.testing.assert_close(layer.weight.grad[0], expected)
    torch.testing.assert_close(layer.eval()(x), x @ layer.weight + layer.bias.unsqueeze(1))


# ------------------------------------------------------------------ D4: noise on hidden units and weights


def test_gaussian_noise_has_mean_zero_variance_sigma_squared_and_is_off_in_eval():
    sigma = [0.0, 0.5, 2.0]
    noise = GaussianNoise(sigma, random=MemberRandom([0, 1, 2]), stream=2000).train()
    x = torch.randn(300, 200)
    eps = (noise(x) - x).double()
    n = x.numel()
    for m, s in enumerate(sigma):
        assert abs(eps[m].mean().item()) <= 5 * s / math.sqrt(n) + 1e-12
        assert abs(eps[m].var().item() - s * s) <= 5 * s * s * math.sqrt(2 / n) + 1e-12
    assert torch.equal(eps[0], torch.zeros_like(eps[0]))
    assert noise.eval()(x) is x


def test_weight_noise_gradient_is_taken_at_the_noisy_weights():
    random = MemberRandom([3])
    layer = Linear(1, 4, 2, bias=False).set_weight_transforms(noise=GaussianNoise([0.3], random=random, stream=4000))
    torch.nn.init.normal_(layer.weight)
    x = torch.randn(1, 6, 4)
    random.step = 5
    noisy = (layer.weight + 0.3 * random.normal(4000, (4, 2))).detach().requires_grad_(True)
    ((x @ noisy) ** 2).sum().backward()
    (layer.train()(x) ** 2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, noisy.grad)
    assert not torch.allclose(noisy.grad, torch.autograd.grad(((x @ layer.weight) ** 2).sum(), layer.weight)[0])
    torch.testing.assert_close(layer.eval()(x), x @ layer.weight)  # no noise at test


def test_mlp_noise_and_dropconnect_act_in_training_only():
    kwargs = dict(widths=[12, 12], seeds=[0, 1])
    plain = MLP(5, 3, **kwargs)
    noisy = MLP(5, 3, **kwargs, dropconnect=[0.3, 0.3], hidden_noise=[0.5, 0.5], weight_noise=[0.1, 0.1])
    noisy.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(7, 5)
    torch.testing.assert_close(noisy.eval()(x), plain.eval()(x))
    assert not torch.allclose(noisy.train()(x), plain.train()(x))
    assert [linear.dropconnect is not None for linear in [*noisy.hidden, noisy.output]] == [True, True, False]
    assert all(linear.weight_noise is not None for linear in [*noisy.hidden, noisy.output])
    assert all(linear.plain for linear in [*plain.hidden, plain.output])


def test_population_with_dropconnect_noise_and_spectral_norm_equals_separate_runs():
    base = _with(BASE, **{"model.weight_norm": "spectral", "train.epochs": 3})
    values = {"model.dropconnect": [0.0, 0.3], "model.hidden_noise": [0.2, 0.0], "model.weight_noise": [0.05, 0.1]}
    pop = fit(_with(base, seed=[0, 1], **values))
    for m in range(2):
        alone = fit(_with(base, seed=m, **{k: v[m] for k, v in values.items()}))
        ours = [r for r in pop.history if r["member"] == m]
        for a, b in zip(ours, alone.history):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-6)
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-6)
        mine = {k: v[m] for k, v in pop.model.state_dict().items() if v.dim() >= 1}
        for name, value in alone.model.state_dict().items():
            if value.dim() >= 1:
                torch.testing.assert_close(mine[name], value[0], rtol=1e-4, atol=1e-6, msg=name)


def test_new_numeric_keys_are_member_axes_of_a_search_and_checked():
    for key in ("model.dropconnect", "model.hidden_noise", "model.weight_noise"):
        assert key in NUMERIC_KEYS
    recipe = load_recipe(BASE)
    structures, numbers = split_grid(recipe, {"model.hidden_noise": [0.0, 0.1, 0.3]})
    assert structures == [{}] and len(numbers) == 3
    assert population_recipe(recipe, structures[0], numbers).model.hidden_noise == [0.0, 0.1, 0.3]
    with pytest.raises(RecipeError, match="model.dropconnect: expected a drop probability in \\[0, 1\\), got 1.0"):
        fit(_with(BASE, **{"model.dropconnect": 1.0}))
    with pytest.raises(RecipeError, match="model.weight_noise: expected a value >= 0.0, got -0.1"):
        load_recipe(_with(BASE, **{"model.weight_noise": -0.1}))
    with pytest.raises(RecipeError, match="per-member lists must all have the same length"):
        load_recipe(_with(BASE, **{"model.hidden_noise": [0.1, 0.2], "penalty.l2": [0.0, 0.1, 0.2]}))


# ------------------------------------------------------------------ F3: weight norms as recipe options


def test_weight_norm_options_give_the_effective_weights_of_their_formulas():
    x = torch.randn(6, 5)
    for name in ("standardize", "minmax", "spectral"):
        net = MLP(5, 2, widths=[8, 4], seeds=[0, 1], weight_norm=name).eval()
        for layer in net.hidden:
            W, eff = layer.weight, layer.effective_weight()
            if name == "standardize":
                torch.testing.assert_close(eff, standardize_weight(W) * math.sqrt(2 / layer.in_features))
            elif name == "minmax":
                bound = math.sqrt(6 / layer.in_features)  # starts at He-uniform's range [-a, a] per unit
                torch.testing.assert_close(eff, minmax_weight(W, gamma=2 * bound, beta=-bound))
                torch.testing.assert_close(eff.amax(1), torch.full((2, layer.out_features), bound))
            else:
                sigma = torch.linalg.matrix_norm(W.detach(), ord=2)
                assert torch.all(torch.linalg.matrix_norm(eff.detach(), ord=2) >= 0.999)  # W / (estimate <= sigma)
                assert torch.all(layer.weight_norm.sigma <= sigma * (1 + 1e-5))
        assert net.output.plain  # the output layer keeps its plain weight
        forward = net(x)
        manual = x
        for layer in net.hidden:
            manual = torch.relu(manual @ layer.effective_weight() + layer.bias.unsqueeze(1))
        torch.testing.assert_close(forward, net.output(manual))
    assert set(WEIGHT_NORMS) == {"none", "standardize", "minmax", "spectral"}


@pytest.mark.parametrize("name", ["standardize", "minmax", "spectral"])
def test_weight_norm_trains_reloads_and_spectral_converges_to_norm_one(name, tmp_path):
    result = fit(_with(BASE, **{"model.weight_norm": name, "track": {**QUIET, "checkpoint": True},
                               "train.epochs": 6}), out=tmp_path / "run")
    assert result.summary["test"]["accuracy"] > 0.7
    trained = load_run(tmp_path / "run")
    X = np.random.default_rng(0).normal(size=(9, 2))
    np.testing.assert_allclose(trained.predict(X)["probabilities"], result_probs(result, X), atol=1e-6)
    if name == "minmax":  # gamma and beta are learned (norm parameters, not penalized)
        roles = {r.name: r.role for r in result.model.param_roles()}
        assert roles["hidden.0.weight_norm.gamma"] == "norm"
    if name == "spectral":  # after many power-iteration steps the hidden maps are 1-Lipschitz
        for layer in result.model.hidden:
            norm = torch.linalg.matrix_norm(layer.effective_weight().detach(), ord=2)
            torch.testing.assert_close(norm, torch.ones_like(norm), rtol=2e-2, atol=0)


def result_probs(result, X):
    inputs = SplitData.transform_inputs(result.data.preprocessing(), X)
    result.model.eval()
    with torch.no_grad():
        return torch.softmax(result.model(inputs), -1).mean(0).numpy()


# ------------------------------------------------------------------ D2: Monte-Carlo dropout


def _reference_mc(net: MLP, x: torch.Tensor, T: int) -> torch.Tensor:
    """T explicit passes, pass t with the masks the batched pass gives copy t: [M, T, N, K]."""
    n = len(x)
    net.random.step = MC_STEP
    outs = []
    layers = [net.input_dropout, *net.dropouts]
    widths = [x.shape[-1], *[linear.out_features for linear in net.hidden]]
    keeps = [d.random.generator_keep(d.stream, (T * n, w), d.p) for d, w in zip(layers, widths)]
    net.eval()
    try:
        for t in range(T):
            for d, keep in zip(layers, keeps):
                if d.active:
                    d.sampling = True
                    d.forward = (lambda z, d=d, keep=keep: dropout_masked(
                        z if z.dim() == 3 else z.expand(net.members, *z.shape), d.p, keep[:, t * n : (t + 1) * n]))
            outs.append(net(x))
    finally:
        for d in layers:
            d.sampling = False
            d.__dict__.pop("forward", None)  # back to the class's forward
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize(
    "dropout_p, residual, masked",
    [([[0.2] * 2, [0.3] * 2, [0.5] * 2], False, False), ([[0.0] * 2, [0.0] * 2, [0.5, 0.3]], False, False),
     ([[0.0] * 2, [0.4] * 2, [0.0] * 2], True, False), ([[0.0] * 2, [0.0] * 2, [0.5, 0.3]], False, True)],
    ids=["input_dropout_tiling_path", "last_layer_prefix_once", "residual_prefix_once", "input_mask_prefix_once"],
)
def test_batched_mc_equals_explicit_passes_with_the_same_masks(dropout_p, residual, masked):
    net = MLP(6, 3, widths=[10, 10], seeds=[0, 1], dropout=dropout_p, norm="batch", residual=residual)
    with torch.no_grad():  # running statistics unlike a batch's own: eval-mode BatchNorm is visible
        for norm in net.norms:
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    if masked:  # C6: each member sees its own inputs, in the batched prefix too
        net.add_input_mask(6)
        net.input_mask.copy_(torch.tensor([[1.0, 0, 1, 0, 1, 1], [0, 1, 1, 1, 0, 0]]))
    x, T = torch.randn(7, 6), 5
    net.train()
    net.random.step = 42
    batched = mc_outputs(net, x, T)
    assert batched.shape == (2, T, 7, 3)
    assert net.training and net.random.step == 42  # mode and step restored
    assert not any(d.sampling for d in [net.input_dropout, *net.dropouts])
    with torch.no_grad():
        reference = _reference_mc(net, x, T)
    torch.testing.assert_close(batched, reference, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(batched[:, 0], batched[:, 1])  # different masks per copy
    net.mc_forward = None  # the generic path (tile the inputs, run the whole model) gives the same masks
    torch.testing.assert_close(mc_outputs(net, x, T), batched, rtol=1e-5, atol=1e-6)


def test_mc_statistics_and_chunking():
    net = MLP(4, 3, widths=[16], seeds=[0], dropout=[[0.0], [0.5]])
    x = torch.randn(11, 4)
    outputs = mc_outputs(net, x, 20, max_rows=60)  # 3 rows per chunk: 4 chunks of masks
    assert outputs.shape == (1, 20, 11, 3)
    summary = mc_summary(outputs, "classification")
    probs = torch.softmax(outputs[0].double(), -1)
    torch.testing.assert_close(summary["mean"], probs.mean(0))
    torch.testing.assert_close(summary["std"], ((probs - probs.mean(0)) ** 2).mean(0).sqrt())
    mean = summary["mean"].numpy()
    np.testing.assert_allclose(summary["entropy"].numpy(), -(mean * np.log(mean)).sum(1))
    torch.testing.assert_close(mc_outputs(net, x, 20, max_rows=60), outputs)  # deterministic
    # regression: the MC mean converges to the test output (dropout before a linear output layer)
    reg = MLP(4, 1, widths=[16], seeds=[0], dropout=[[0.0], [0.5]])
    many = mc_predict(reg, x, 4000, "regression")
    with torch.no_grad():
        test = reg.eval()(x)[0, :, 0].double()
    assert _within(many["mean"], test, many["std"], 4000)
    assert torch.all(many["std"] > 0)


def test_mc_needs_a_model_with_dropout():
    with pytest.raises(ValueError, match="Monte-Carlo dropout needs a model with active dropout.*got none"):
        mc_outputs(MLP(4, 2, widths=[8], seeds=[0]), torch.randn(3, 4), 5)
    wrapped = Wrapped(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)))
    with pytest.raises(ValueError, match="found Dropout, which tamenet cannot sample"):
        mc_outputs(wrapped, torch.randn(3, 4), 5)
    with pytest.raises(ValueError, match="expected T \\(samples\\) to be a positive integer, got 0"):
        mc_outputs(MLP(4, 2, widths=[8], seeds=[0], dropout=[[0.0], [0.5]]), torch.randn(3, 4), 0)


def test_predict_mc_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fit(_with(BASE, **{"model.dropout": 0.3, "track": {**QUIET, "checkpoint": True}}), out=tmp_path / "run")
    X = np.random.default_rng(1).normal(size=(13, 2)).round(4)
    with open(tmp_path / "new.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["x0", "x1"], *X.tolist()])
    assert main(["predict", "run", "--input", "new.csv", "--output", "pred.csv", "--mc", "20"]) == 0
    with open(tmp_path / "pred.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["prediction", "p_0", "p_1", "std_0", "std_1", "entropy"]
    expected = load_run("run").predict_mc(X, 20)
    np.testing.assert_allclose([[float(r["p_0"]), float(r["p_1"])] for r in rows], expected["probabilities"], atol=1e-6)
    np.testing.assert_allclose([float(r["entropy"]) for r in rows], expected["entropy"], atol=1e-6)
    assert [r["prediction"] for r in rows] == [str(v) for v in expected["label"]]
    assert main(["predict", "run", "--input", "new.csv", "--mc", "0"]) == 2
    assert "--mc: expected the number of dropout masks T >= 1, got 0" in capsys.readouterr().err


def test_predict_mc_regression_std_in_target_units(tmp_path):
    recipe = {"data": {"name": "diabetes"}, "model": {"widths": [16], "dropout": 0.3},
              "train": {"epochs": 3}, "track": {**QUIET, "checkpoint": True}}
    fit(recipe, out=tmp_path / "run")
    trained = load_run(tmp_path / "run")
    X = np.random.default_rng(0).normal(size=(5, 10)) * 0.05
    pred = trained.predict_mc(X, 30)
    raw = mc_predict(trained.model, SplitData.transform_inputs(trained.preprocessing, X), 30, "regression")
    scale = float(np.asarray(trained.preprocessing["target_scaler"]["std"]).reshape(-1)[0])
    np.testing.assert_allclose(pred["std"], raw["std"].numpy() * scale, rtol=1e-6)
    assert scale > 10  # diabetes' target spreads over tens of units: the scaling matters


def test_generator_keep_masks_keep_one_minus_p_and_do_not_depend_on_the_population():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9])
    random = MemberRandom([0, 1, 2, 3])
    random.step = 3
    keep = random.generator_keep(5, (300, 400), p)
    assert keep.shape == (4, 300, 400) and keep.dtype == torch.bool
    n = 300 * 400
    for m in range(4):
        share = keep[m].double().mean().item()
        assert abs(share - (1 - p[m].item())) <= 5 * math.sqrt(p[m].item() * (1 - p[m].item()) / n) + 1e-12
        alone = MemberRandom([m])
        alone.step = 3
        assert torch.equal(alone.generator_keep(5, (300, 400), p[m : m + 1])[0], keep[m])
    random.step = 4
    assert not torch.equal(random.generator_keep(5, (300, 400), p)[2], keep[2])  # another step, another mask
