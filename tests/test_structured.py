"""Structured pruning (H1): the shrunk model computes what the masked one does, the counts shrink as the widths say,
the criteria pick the units they name; network slimming's penalty on BatchNorm gammas; `tamenet shrink`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytest.importorskip("torch_pruning", reason="structured pruning needs the 'compress' extra (torch-pruning)")

from tamenet.api import fit  # noqa: E402
from tamenet.cli import main  # noqa: E402
from tamenet.compress.structured import (  # noqa: E402
    block_scores, fine_tune, load_shrunk, masked_equivalent, parameter_count, prune_structured,
)
from tamenet.config import ModelConfig, RecipeError  # noqa: E402
from tamenet.models.build import build_model  # noqa: E402
from tamenet.models.export import export_member  # noqa: E402
from tamenet.penalties import BatchNormL1Gradients, batch_norm_gammas, bn_l1_penalty  # noqa: E402

from test_training import QUIET, _assert_population_equals_separate_runs, _with  # noqa: E402

REPEATS = 2  # latency repeats: timing is not what these tests check


def _member(n_in: int, shape=None, **model) -> nn.Module:
    """Member 1 of a two-member population as plain PyTorch, its BatchNorms given random statistics and affine
    parameters (so a unit cut or kept wrongly shows in the outputs)."""
    population = build_model(ModelConfig(**model), n_in=n_in, n_out=3, seeds=[4, 5], input_shape=shape)
    plain = export_member(population, 1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in plain.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                for t, low, high in ((layer.weight, 0.05, 1.0), (layer.bias, -1.0, 1.0),
                                     (layer.running_mean, -1.0, 1.0), (layer.running_var, 0.5, 2.0)):
                    t.copy_(low + (high - low) * torch.rand(t.shape, generator=generator))
    return plain.eval()


CASES = {
    "mlp-batchnorm-residual": (10, None, "neurons", {"kind": "mlp", "widths": [16, 16], "norm": "batch", "residual": True}),
    "mlp-dropout": (10, None, "neurons", {"kind": "mlp", "widths": [12, 10], "dropout": 0.3}),
    "cnn-flatten": (64, [1, 8, 8], "channels", {"kind": "cnn", "channels": [8, 6], "norm": "batch", "readout": "flatten"}),
    "cnn-residual-head": (64, [1, 8, 8], "channels",
                          {"kind": "cnn", "channels": [8, 8], "norm": "batch", "residual": True, "head_widths": [12]}),
    "cnn-head-neurons": (64, [1, 8, 8], "neurons", {"kind": "cnn", "channels": [4], "head_widths": [12, 10]}),
    "resnet": (64, [1, 8, 8], "channels", {"kind": "resnet", "channels": [8, 16], "norm": "batch", "blocks": 2}),
}


PAIRS = [(case, importance) for case, (_, _, _, model) in CASES.items()
         for importance in ("l1", "l2", "bn_gamma") if importance != "bn_gamma" or model.get("norm") == "batch"]


@pytest.mark.parametrize("case, importance", PAIRS, ids=[f"{c}-{i}" for c, i in PAIRS])
def test_the_shrunk_model_computes_what_the_masked_model_does(case, importance):
    n_in, shape, unit, model = CASES[case]
    plain = _member(n_in, shape, **model)
    x = torch.randn(6, n_in, generator=torch.Generator().manual_seed(1))
    small, summary = prune_structured(plain, x, share=0.5, unit=unit, importance=importance, repeats=REPEATS)
    assert summary.removed, "nothing was cut"
    assert summary.after["parameters"] == parameter_count(small) < parameter_count(plain) == summary.before["parameters"]
    assert summary.after["macs"] < summary.before["macs"]
    torch.testing.assert_close(small(x), masked_equivalent(plain, summary)(x), rtol=1e-5, atol=1e-5)
    # and the cut was real: the unmasked model computes something else
    assert (plain(x) - small(x)).abs().max() > 1e-3


def test_parameter_counts_shrink_as_the_kept_widths_say():
    """An MLP 10 -> 16 -> 12 -> 3 at share 0.5 keeps floor(n / 2) units per hidden layer: 10 -> 8 -> 6 -> 3."""
    plain = _member(10, kind="mlp", widths=[16, 12])
    small, summary = prune_structured(plain, torch.randn(4, 10), share=0.5, unit="neurons", repeats=REPEATS)
    dense = lambda i, o: i * o + o  # noqa: E731
    assert parameter_count(plain) == dense(10, 16) + dense(16, 12) + dense(12, 3)
    assert parameter_count(small) == dense(10, 8) + dense(8, 6) + dense(6, 3)
    assert [w for w in summary.widths.values()] == [[16, 8], [12, 6], [3, 3]]
    # a CNN's channels: conv 1 -> 8 -> 6 (3x3, no bias before BatchNorm) -> flatten of 6 x 2 x 2 -> 3 classes
    plain = _member(64, [1, 8, 8], kind="cnn", channels=[8, 6], norm="batch", readout="flatten")
    small, _ = prune_structured(plain, torch.randn(4, 64), share=0.5, unit="channels", repeats=REPEATS)
    convs = lambda c1, c2: 1 * c1 * 9 + 2 * c1 + c1 * c2 * 9 + 2 * c2 + (c2 * 4) * 3 + 3  # noqa: E731
    assert parameter_count(plain) == convs(8, 6) and parameter_count(small) == convs(4, 3)


def test_bn_gamma_cuts_the_channels_of_smallest_gamma_in_each_layer():
    plain = _member(64, [1, 8, 8], kind="cnn", channels=[8, 6], norm="batch")
    gammas = [m.weight.detach().abs() for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [name for name, m in plain.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    _, summary = prune_structured(plain, torch.randn(4, 64), share=0.5, unit="channels", importance="bn_gamma",
                                  repeats=REPEATS)
    # the channels of layer l are the inputs of the next layer (conv 2, then the output Linear after pooling)
    for gamma, consumer in zip(gammas, convs[1:]):
        expected = sorted(torch.argsort(gamma)[: gamma.numel() - gamma.numel() // 2].tolist())
        assert summary.removed[consumer] == expected


def test_l1_cuts_the_units_of_smallest_coupled_weight_magnitude():
    """Torch-Pruning's group L1: unit j of a hidden layer scores sum |W_in[j, :]| + sum |W_out[:, j]| (mean of the two)."""
    plain = _member(10, kind="mlp", widths=[8])
    first, out = plain[0], plain[2]
    score = first.weight.detach().abs().sum(1) + out.weight.detach().abs().sum(0)
    _, summary = prune_structured(plain, torch.randn(4, 10), share=0.25, unit="neurons", importance="l1",
                                  repeats=REPEATS)
    assert summary.removed["2"] == sorted(torch.argsort(score)[:2].tolist())


def test_blocks_remove_the_residual_block_of_smallest_norm_and_keep_shapes():
    plain = _member(64, [1, 8, 8], kind="resnet", channels=[8, 16], norm="batch", blocks=2)
    scores = block_scores(plain, "l1")
    assert len(scores) == 3  # the stage-2 block with its 1x1 projection is not removable
    x = torch.randn(5, 64)
    small, summary = prune_structured(plain, x, share=0.5, unit="blocks", importance="l1", repeats=REPEATS)
    assert summary.removed_blocks == [min(scores, key=scores.get)]
    torch.testing.assert_close(small(x), masked_equivalent(plain, summary)(x), rtol=1e-5, atol=1e-5)
    assert summary.after["parameters"] < summary.before["parameters"]
    mlp = _member(10, kind="mlp", widths=[16, 16, 16], residual=True)
    small, summary = prune_structured(mlp, torch.randn(4, 10), share=0.99, unit="blocks", repeats=REPEATS)
    assert len(summary.removed_blocks) == 1  # floor(0.99 * 2): the first hidden layer changes the width
    torch.testing.assert_close(small(torch.ones(2, 10)), masked_equivalent(mlp, summary)(torch.ones(2, 10)))


def test_share_zero_keeps_the_function_and_the_input_is_left_alone():
    plain = _member(10, kind="mlp", widths=[8])
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    same, summary = prune_structured(plain, torch.randn(4, 10), share=0.0, repeats=REPEATS)
    torch.testing.assert_close(same(torch.ones(3, 10)), plain(torch.ones(3, 10)), rtol=0, atol=0)
    assert summary.after["parameters"] == summary.before["parameters"]
    prune_structured(plain, torch.randn(4, 10), share=0.5, repeats=REPEATS)
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())


@pytest.mark.parametrize("kwargs, words", [
    ({"share": 1.0}, ["share", "[0, 1)"]),
    ({"share": -0.2}, ["share", "[0, 1)"]),
    ({"share": 0.5, "unit": "layers"}, ["unit", "layers", "neurons"]),
    ({"share": 0.5, "importance": "taylor"}, ["importance", "taylor", "bn_gamma"]),
    ({"share": 0.5, "unit": "channels"}, ["channels", "convolutions"]),
    ({"share": 0.5, "importance": "bn_gamma"}, ["bn_gamma", "BatchNorm"]),
    ({"share": 0.5, "unit": "blocks"}, ["blocks", "residual"]),
])
def test_bad_settings_are_refused_by_name(kwargs, words):
    with pytest.raises(ValueError) as err:
        prune_structured(_member(10, kind="mlp", widths=[8]), torch.randn(4, 10), repeats=REPEATS, **kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_the_shrunk_model_fine_tunes():
    X = torch.randn(96, 10, generator=torch.Generator().manual_seed(2))
    y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()
    small, _ = prune_structured(_member(10, kind="mlp", widths=[16], norm="batch"), X[:8], share=0.5,
                                repeats=REPEATS)
    losses = fine_tune(small, X, y, epochs=15, lr=1e-2, batch_size=32)
    assert losses[-1] < 0.7 * losses[0]
    assert not small.training


# ------------------------------------------------------------------ network slimming: L1 on BatchNorm gammas
def test_bn_l1_adds_lambda_sign_gamma_to_the_gammas_only():
    population = build_model(ModelConfig(kind="cnn", channels=[4, 4], norm="batch", head_widths=[6]), n_in=64,
                             n_out=3, seeds=[0, 1], input_shape=[1, 8, 8])
    gammas = batch_norm_gammas(population)
    assert len(gammas) == 2 and all(g.shape == (2, 4) for g in gammas)
    with torch.no_grad():
        gammas[0][0, 1] = -0.5  # a negative gamma: its sign is -1
    strength = torch.tensor([0.0, 0.3])
    x = torch.randn(5, 64)

    def gradients(extra: bool) -> dict[str, torch.Tensor]:
        population.zero_grad(set_to_none=True)
        population(x).square().sum().backward()
        if extra:
            BatchNormL1Gradients()(SimpleNamespace(model=population, hyper={"bn_l1": strength}))
        return {n: p.grad.clone() for n, p in population.named_parameters()}

    plain, slimmed = gradients(False), gradients(True)
    gamma_names = {n for n, p in population.named_parameters() if any(p is g for g in gammas)}
    assert len(gamma_names) == 2
    for name, grad in slimmed.items():
        expected = plain[name]
        if name in gamma_names:
            gamma = dict(population.named_parameters())[name].detach()
            expected = expected + strength.view(-1, 1) * torch.sign(gamma)
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-7, msg=name)
    # the same as differentiating lambda * sum |gamma|
    for g in gammas:
        g.grad = None
    bn_l1_penalty(gammas, strength).sum().backward()
    for g in gammas:
        torch.testing.assert_close(g.grad, strength.view(-1, 1) * torch.sign(g.detach()))


SLIM = {
    "data": {"name": "moons", "n_samples": 160, "noise": 0.3},
    "model": {"widths": [16, 16], "norm": "batch"},
    "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 32, "epochs": 3},
    "track": {**QUIET, "checkpoint": True},
    "seed": 0,
}


def test_a_population_of_bn_l1_strengths_equals_separate_runs():
    strengths = [0.0, 0.05]
    _assert_population_equals_separate_runs(_with(SLIM, **{"penalty.bn_l1": strengths}),
                                            [_with(SLIM, **{"penalty.bn_l1": s}) for s in strengths])


def test_in_training_bn_l1_moves_each_gamma_by_lr_lambda_sign_per_step():
    """Plain SGD with a tiny lr: two members of one seed differ, after n steps, by n * lr * lambda * sign(gamma)."""
    lr, lam, steps = 1e-3, 0.2, []
    result = fit(_with(SLIM, **{"penalty.bn_l1": [0.0, lam], "seed": [0, 0], "train.optimizer": "sgd",
                                "train.lr": lr, "train.epochs": 1}),
                 callbacks=[lambda record, trainer: steps.append(trainer.state.step)])
    assert steps[-1] > 0
    for gamma in batch_norm_gammas(result.model):
        gamma = gamma.detach()
        torch.testing.assert_close(gamma[1] - gamma[0], -steps[-1] * lr * lam * torch.sign(gamma[0]),
                                   rtol=0, atol=2e-6)


def test_bn_l1_without_batchnorm_is_refused():
    with pytest.raises(RecipeError, match="penalty.bn_l1.*model.norm: batch"):
        fit(_with(SLIM, **{"penalty.bn_l1": 0.01, "model.norm": "none"}))


# ------------------------------------------------------------------ tamenet shrink
def test_shrink_cli_writes_a_model_that_reloads_and_scores_as_reported(tmp_path, capsys):
    import numpy as np

    from tamenet.compress.shrink import run_data, score
    from tamenet.trained import load_run

    fit(_with(SLIM, **{"penalty.bn_l1": 0.01}), out=tmp_path / "run")
    capsys.readouterr()
    assert main(["shrink", str(tmp_path / "run"), "--share", "0.5", "--importance", "bn_gamma"]) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "MACs per row" in printed
    file = tmp_path / "run" / "shrunk" / "model-m0.pt"
    model, info = load_shrunk(file)
    assert json.loads(file.with_name(file.name + ".json").read_text())["widths"] == info["widths"]
    assert info["widths"]["0"] == [16, 8] and info["widths"]["3"] == [16, 8]
    # the saved model takes raw rows: on the run's test rows it scores what the summary says
    trained = load_run(tmp_path / "run")
    data = run_data(trained)
    raw = torch.as_tensor(np.asarray(data.scaler.inverse(data.X_test.numpy())), dtype=torch.float32)
    assert score(model, raw, data.y_test, "classification") == pytest.approx(info["scores"]["pruned"], abs=1e-12)
    # fine-tuning writes the fine-tuned score beside it
    out = tmp_path / "tuned.pt"
    assert main(["shrink", str(tmp_path / "run"), "--share", "0.5", "--fine-tune", "2", "--out", str(out)]) == 0
    tuned, info = load_shrunk(out)
    assert len(info["fine_tune"]["train_loss"]) == 2 and "fine_tuned" in info["scores"]
    assert score(tuned, raw, data.y_test, "classification") == pytest.approx(info["scores"]["fine_tuned"], abs=1e-12)


def test_load_shrunk_refuses_other_files(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a model file written by tamenet shrink"):
        load_shrunk(tmp_path / "x.pt")
    torch.save({"state_dict": {}}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="not a model file"):
        load_shrunk(tmp_path / "y.pt")
    with pytest.raises(FileNotFoundError, match="expected a model file"):
        load_shrunk(tmp_path / "nothing.pt")


# ------------------------------------------------------------------ the population-aware path
@pytest.mark.parametrize("norm, importance", [("none", "l1"), ("batch", "bn_gamma")])
def test_a_narrowed_population_equals_the_masked_one_member_by_member(norm, importance):
    from tamenet.compress.compact import masked_population, narrow_population

    result = fit({**SLIM, "model": {"widths": [16, 12], "norm": norm}, "seed": [0, 1, 2],
                  "track": QUIET, "train": {**SLIM["train"], "epochs": 1}})
    narrowed, recipe, kept = narrow_population(result.model, result.recipe, share=0.5, importance=importance)
    assert recipe.model.widths == [8, 6] and kept[0].shape == (3, 8)
    assert len({tuple(k.tolist()) for k in kept[0]}) > 1, "every member chose the same units"
    x = result.data.X_test
    result.model.eval()
    torch.testing.assert_close(narrowed(x), masked_population(result.model, kept)(x), rtol=1e-5, atol=1e-5)
    if importance == "bn_gamma":  # each member keeps its own largest |gamma|
        gamma = result.model.norms[0].weight.detach().abs()
        expected = torch.sort(torch.argsort(gamma, dim=1, descending=True)[:, :8], dim=1).values
        assert torch.equal(kept[0], expected)


def test_shrink_population_writes_a_run_that_evaluate_reads(tmp_path, capsys):
    from tamenet.trained import evaluate_run

    fit({**SLIM, "model": {"widths": [16, 16]}, "seed": [0, 1]}, out=tmp_path / "run")
    assert main(["shrink", str(tmp_path / "run"), "--share", "0.75", "--population"]) == 0
    info = json.loads((tmp_path / "run" / "narrowed" / "shrink.json").read_text())
    assert info["widths"] == {"before": [16, 16], "after": [4, 4]}
    evaluated = evaluate_run(tmp_path / "run" / "narrowed")
    assert evaluated["test"]["accuracy"] == pytest.approx(info["scores"]["after"], abs=1e-12)
    capsys.readouterr()
    assert main(["shrink", str(tmp_path / "run"), "--share", "0.5", "--population"]) == 2  # it would overwrite
    assert "already holds a model.pt" in capsys.readouterr().err


def test_the_fine_tuning_adam_follows_its_formula():
    """Two steps on w with gradients g1, g2: m_t, v_t as Kingma & Ba; w_t = w_{t-1} - lr m_hat / (sqrt(v_hat) + eps)."""
    from tamenet.compress.structured import _Adam

    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt, lr, (b1, b2), eps = _Adam([w], lr=0.1), 0.1, (0.9, 0.999), 1e-8
    grads = [torch.tensor([0.5, -3.0]), torch.tensor([-1.0, 2.0])]
    expected, m, v = w.detach().clone(), torch.zeros(2), torch.zeros(2)
    for t, g in enumerate(grads, start=1):
        w.grad = g.clone()
        opt.step()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        expected = expected - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        torch.testing.assert_close(w.detach(), expected, rtol=1e-6, atol=1e-7)


def test_the_command_lines_torch_free_names_match_the_library():
    import tamenet.cli_shrink as cli_shrink
    from tamenet.compress.structured import IMPORTANCES, UNITS

    assert cli_shrink.UNITS == tuple(UNITS) and cli_shrink.IMPORTANCES == tuple(IMPORTANCES)
