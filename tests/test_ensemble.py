"""Averaging ensembles (D5): `fit(..., ensemble=M)` and `tamenet train --ensemble M`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from tamenet import RecipeError, fit
from tamenet.cli import main
from tamenet.config import DataConfig
from tamenet.data import Standardizer, prepare
from tamenet.ensemble import ensemble_seeds
from tamenet.trained import load_run

CLASSIFY = {
    "name": "small",
    "data": {"name": "moons", "n_samples": 200},
    "model": {"widths": [8]},
    "train": {"optimizer": "adam", "lr": 0.01, "epochs": 4},
    "track": {"tensorboard": False, "plots": False, "checkpoint": False},
    "seed": 5,
}
REGRESS = {**CLASSIFY, "data": {"name": "diabetes"}}


def _separate_outputs(recipe: dict, seeds: list[int], *Xs: torch.Tensor) -> list[torch.Tensor]:
    """For each X: the raw outputs [M, N, K] of M separate single-seed runs, stacked, in float64."""
    outs: list[list[torch.Tensor]] = [[] for _ in Xs]
    for seed in seeds:
        single = fit({**recipe, "seed": seed})
        assert single.model.members == 1
        single.model.eval()
        with torch.no_grad():
            for i, X in enumerate(Xs):
                outs[i].append(single.model(X)[0].double())
    return [torch.stack(o) for o in outs]


def test_classification_ensemble_equals_the_average_of_separate_members_probabilities():
    result = fit(CLASSIFY, ensemble=3)
    ens = result.summary["ensemble"]
    assert ens["seeds"] == [5, 6, 7] and [m["seed"] for m in result.summary["per_member"]] == [5, 6, 7]
    data = result.data
    separate = _separate_outputs(CLASSIFY, [5, 6, 7], data.X_test, data.X_val)
    for split, outs, y in (("test", separate[0], data.y_test), ("val", separate[1], data.y_val)):
        probs = outs.softmax(-1).numpy().mean(0)  # by hand: mean of the members' probabilities
        labels = y.numpy()
        expected_loss = -np.log(probs[np.arange(len(labels)), labels]).mean()
        expected_acc = (probs.argmax(1) == labels).mean()
        assert ens[split]["loss"] == pytest.approx(expected_loss, rel=1e-5)
        assert ens[split]["accuracy"] == pytest.approx(expected_acc, abs=1e-12)
    # the ensemble is not just one of its members here: its loss differs from every member's
    member_losses = [m["test"]["loss"] for m in result.summary["per_member"]]
    assert all(abs(ens["test"]["loss"] - v) > 1e-4 for v in member_losses)


def test_regression_ensemble_equals_the_average_of_separate_members_predictions():
    result = fit(REGRESS, ensemble=2)
    ens, data = result.summary["ensemble"], result.data
    values = _separate_outputs(REGRESS, [5, 6], data.X_test)[0].squeeze(-1).numpy().mean(0)
    error = values - data.y_test.double().numpy()
    assert ens["test"]["loss"] == pytest.approx(0.5 * np.mean(error**2), rel=1e-5)
    assert ens["test"]["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)) * data.target_std, rel=1e-5)
    assert ens["combine"] == "mean of the members' predictions"


def test_members_mean_and_best_are_taken_over_the_per_member_figures():
    summary = fit(CLASSIFY, ensemble=3).summary
    members, ens = summary["per_member"], summary["ensemble"]
    for split in ("train", "val", "test"):
        accuracies = [m[split]["accuracy"] for m in members]
        losses = [m[split]["loss"] for m in members]
        assert ens["members_mean"][split]["accuracy"] == pytest.approx(np.mean(accuracies))
        assert ens["members_best"][split]["accuracy"] == max(accuracies)
        assert ens["members_best"][split]["loss"] == min(losses)


def test_ensemble_of_one_is_a_plain_run():
    plain, one = fit(CLASSIFY).summary, fit(CLASSIFY, ensemble=1).summary
    ens = one.pop("ensemble")
    for key in ("wall_time_s", "train_time_s"):
        plain.pop(key), one.pop(key)
    assert one == plain
    for split in ("train", "val", "test"):
        assert ens[split]["loss"] == pytest.approx(plain[split]["loss"], rel=1e-6)
        assert ens[split]["accuracy"] == plain[split]["accuracy"]


def test_ensemble_seeds_from_a_base_seed_or_a_list_of_m():
    assert ensemble_seeds(3, 4) == [3, 4, 5, 6]
    assert ensemble_seeds([3], 2) == [3, 4]
    assert ensemble_seeds([9, 1, 4], 3) == [9, 1, 4]


@pytest.mark.parametrize("members", [0, -2, True, 2.0])
def test_ensemble_size_must_be_a_positive_integer(members):
    with pytest.raises(ValueError, match=f"expected a positive integer number of members, got {members!r}"):
        fit(CLASSIFY, ensemble=members)


def test_a_seed_list_of_another_length_is_refused():
    with pytest.raises(RecipeError, match="seed is already a list of 2 seeds.*or a list of 3"):
        fit({**CLASSIFY, "seed": [0, 1]}, ensemble=3)


def test_another_per_member_list_must_match_the_ensemble_size():
    with pytest.raises(RecipeError, match="same length"):
        fit({**CLASSIFY, "penalty": {"l2": [0.0, 0.1]}}, ensemble=3)


def test_cli_ensemble_writes_the_comparison_and_predict_averages_the_same_way(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = {**CLASSIFY, "track": {"tensorboard": False, "plots": False}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", "r.yaml", "--ensemble", "3", "--out", "run"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    ens = summary["ensemble"]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[1:2] == ["-"]}
    assert float(rows["ensemble"][-2]) == pytest.approx(ens["test"]["accuracy"], abs=1e-4)  # test accuracy column
    assert float(rows["mean"][-2]) == pytest.approx(ens["members_mean"]["test"]["accuracy"], abs=1e-4)
    assert f"ensemble of 3 (mean of the members' probabilities): test accuracy {ens['test']['accuracy']:.4g}" in out
    # the saved population predicts with the same average (from raw rows, through its own preprocessing)
    data = prepare(DataConfig(name="moons", n_samples=200))
    raw = Standardizer.from_dict(data.preprocessing()["scaler"]).inverse(data.X_test.numpy())
    probs = load_run(tmp_path / "run").predict(raw)["probabilities"]
    labels = data.y_test.numpy()
    assert -np.log(probs[np.arange(len(labels)), labels]).mean() == pytest.approx(ens["test"]["loss"], rel=1e-4)
    assert (probs.argmax(1) == labels).mean() == pytest.approx(ens["test"]["accuracy"])

def test_cli_ensemble_mistakes_end_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**CLASSIFY, "seed": [0, 1]}))
    for argv, needle in ((["train", "r.yaml", "--ensemble", "0"], "expected a positive integer number of members, got 0"),
                         (["train", "r.yaml", "--ensemble", "3"], "seed is already a list of 2 seeds")):
        assert main(argv) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tamenet train: error: ensemble: ") and needle in lines[0]
        assert "Traceback" not in captured.out + captured.err


def test_a_users_module_cannot_be_an_ensemble():
    module = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="population of one, got ensemble=3"):
        fit(CLASSIFY, module=module, ensemble=3)
