"""The command line: user mistakes end in one line and exit code 2; train / evaluate / predict / datasets work."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tamenet.cli import main
from tamenet.track import read_metrics, read_status
from tamenet.trained import load_run

BUILTINS = ("digits", "mnist1d", "diabetes", "breast_cancer", "wine", "moons", "spirals")

SMALL = {
    "name": "small",
    "data": {"name": "moons", "n_samples": 200},
    "model": {"widths": [8]},
    "train": {"optimizer": "adam", "lr": 0.01, "epochs": 3},
    "track": {"tensorboard": False, "plots": False},
    "seed": 0,
}


def _recipe(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _changed(**sections) -> dict:
    out = json.loads(json.dumps(SMALL))
    for section, values in sections.items():
        out[section] = {**out.get(section, {}), **values}
    return out


def _assert_user_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tamenet {argv[0]}: error: ")
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.fixture()
def trained_run(tmp_path, monkeypatch, capsys):
    """`tamenet train small.yaml --out run` in tmp_path; returns the run directory and what it printed."""
    monkeypatch.chdir(tmp_path)
    code = main(["train", _recipe(tmp_path, SMALL), "--out", "run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return tmp_path / "run", out


# ------------------------------------------------------------------ user mistakes


def test_unknown_recipe_key_suggests_the_close_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _recipe(tmp_path, _changed(train={"epochz": 3}))
    _assert_user_error(capsys, ["train", path], "train.epochz", "did you mean 'epochs'")


@pytest.mark.parametrize(
    "section, values, needles",
    [
        ("train", {"epochs": "ten"}, ("train.epochs", "expected an integer", "ten")),
        ("model", {"widths": 8}, ("model.widths", "expected a list")),
        ("data", {"val": 1.5}, ("data.val", "<= 1.0", "1.5")),
        ("train", {"lr": -0.1}, ("train.lr", "> 0.0", "-0.1")),
    ],
    ids=["wrong-type-int", "wrong-type-list", "out-of-range-high", "out-of-range-low"],
)
def test_wrong_value_type_or_range_names_the_key(tmp_path, monkeypatch, capsys, section, values, needles):
    monkeypatch.chdir(tmp_path)
    _assert_user_error(capsys, ["train", _recipe(tmp_path, _changed(**{section: values}))], *needles)


@pytest.mark.parametrize(
    "section, key, value, valid",
    [
        ("model", "activation", "relux", ("sigmoid", "tanh", "relu", "leaky_relu", "gelu")),
        ("train", "optimizer", "adamm", ("sgd", "rmsprop", "adam", "adamw")),
    ],
)
def test_unknown_activation_or_optimizer_lists_the_valid_names(tmp_path, monkeypatch, capsys, section, key, value, valid):
    monkeypatch.chdir(tmp_path)
    line = _assert_user_error(capsys, ["train", _recipe(tmp_path, _changed(**{section: {key: value}}))], value)
    listed = line.split("(valid: ")[1].rstrip(")").split(", ")
    assert set(valid) <= set(listed)
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_missing_recipe_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _assert_user_error(capsys, ["train", "nowhere.yaml"], "nowhere.yaml", "not found")


def test_csv_data_without_the_target_column(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    rows = [["a", "b", "label"], *[[f"{u:.3f}", f"{v:.3f}", str(int(u > v))] for u, v in rng.normal(size=(40, 2))]]
    with open(tmp_path / "data.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    recipe = _changed(data={"name": "csv", "path": "data.csv", "target": "y"})
    recipe["data"].pop("n_samples")
    _assert_user_error(capsys, ["train", _recipe(tmp_path, recipe)], "'y'", "a, b, label")


@pytest.mark.parametrize("item", ["train.lr", "=0.1", "train..lr=0.1"])
def test_malformed_set_override(tmp_path, monkeypatch, capsys, item):
    monkeypatch.chdir(tmp_path)
    _assert_user_error(capsys, ["train", _recipe(tmp_path, SMALL), "--set", item], "--set")


def test_debug_flag_reraises_with_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        main(["--debug", "train", "nowhere.yaml"])
    with pytest.raises(FileNotFoundError):
        main(["train", "nowhere.yaml", "--debug"])


# ------------------------------------------------------------------ train / evaluate / predict / datasets


def test_train_writes_the_run_and_prints_the_split_table(trained_run):
    run, out = trained_run
    summary = json.loads((run / "summary.json").read_text())
    assert read_status(run)["state"] == "finished"
    assert len(read_metrics(run)) == 3
    assert load_run(run).model.members == 1
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["train"], ["val"], ["test"])}
    assert set(table) == {"train", "val", "test"}
    for split, (loss, accuracy) in table.items():
        assert float(loss) == pytest.approx(summary[split]["loss"], rel=1e-3)
        assert float(accuracy) == pytest.approx(summary[split]["accuracy"], rel=1e-3)
    assert f"run directory: {Path('run')}" in out


def test_evaluate_reproduces_the_summary_test_accuracy(trained_run, capsys):
    run, _ = trained_run
    summary = json.loads((run / "summary.json").read_text())
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["train"], ["val"], ["test"])}
    member, loss, accuracy = rows["test"]
    assert int(member) == 0
    assert float(loss) == pytest.approx(summary["test"]["loss"], rel=1e-3)
    assert float(accuracy) == pytest.approx(summary["test"]["accuracy"], rel=1e-3)


def test_predict_writes_one_prediction_per_input_row(trained_run, tmp_path, capsys):
    run, _ = trained_run
    X = np.random.default_rng(1).normal(size=(17, 2))
    with open(tmp_path / "new.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["x0", "x1"], *X.round(4).tolist()])
    assert main(["predict", str(run), "--input", "new.csv", "--output", "pred.csv"]) == 0
    assert "17 predictions" in capsys.readouterr().out
    with open(tmp_path / "pred.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 17
    expected = load_run(run).predict(X.round(4))
    assert [r["prediction"] for r in rows] == [str(v) for v in expected["label"]]
    probs = np.array([[float(r["p_0"]), float(r["p_1"])] for r in rows])
    np.testing.assert_allclose(probs, expected["probabilities"], atol=1e-6)


def test_predict_input_with_the_wrong_number_of_features(trained_run, tmp_path, capsys):
    run, _ = trained_run
    (tmp_path / "bad.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    _assert_user_error(capsys, ["predict", str(run), "--input", "bad.csv"], "expected 2 feature columns", "3 columns")


def test_datasets_lists_every_builtin(capsys):
    assert main(["datasets"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(BUILTINS) <= names


def test_installed_entry_point_runs_in_a_subprocess():
    script = Path(sys.executable).with_name("tamenet")
    assert script.is_file(), f"console script missing next to {sys.executable}"
    done = subprocess.run([str(script), "datasets"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in BUILTINS:
        assert name in done.stdout


# ------------------------------------------------------------------ divergence and Ctrl-C


def test_absurd_learning_rate_exits_1_naming_the_epoch_and_keeps_finite_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = {"data": {"name": "diabetes"}, "model": {"widths": [8]},
              "train": {"optimizer": "sgd", "lr": 1e8, "epochs": 5},
              "track": {"tensorboard": False, "plots": False}, "seed": 0}
    code = main(["train", _recipe(tmp_path, recipe), "--out", "run"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "epoch 1" in err and "NaN" in err
    model = load_run(tmp_path / "run").model
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert read_status(tmp_path / "run")["state"] == "failed"


def test_ctrl_c_during_training_finishes_the_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    import tamenet.progress as progress

    def interrupt_at_epoch_2(self, record, trainer):
        if record.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.PlainProgress, "on_epoch", interrupt_at_epoch_2)
    recipe = _changed(train={"epochs": 10})
    code = main(["train", _recipe(tmp_path, recipe), "--out", "run"])
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted" in err
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["epochs_run"] == 2
    assert read_status(run)["state"] == "interrupted"
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert load_run(run).model.members == 1
