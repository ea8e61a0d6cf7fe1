"""`tamenet cv` and `tamenet search` in-process: the files they write, what they print, their user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tamenet.cli import main
from tamenet.track import read_metrics, read_status
from tamenet.track.tables import format_cell

SMALL = {
    "name": "small",
    "data": {"name": "moons", "n_samples": 200},
    "model": {"widths": [16]},
    "penalty": {"l2": [0.0, 0.01]},
    "train": {"optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 32},
    "track": {"tensorboard": False, "plots": False},
    "seed": 0,
}
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe(tmp_path: Path, recipe: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tamenet {argv[0]}: error: ")
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cv_writes_its_run_directory_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["cv", _recipe(tmp_path, SMALL), "--folds", "3", "--out", "cvrun"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run = tmp_path / "cvrun"
    for name in ("cv.json", "cv.png", "metrics.csv", "recipe.yaml", "status.json"):
        assert (run / name).is_file(), name
    assert (run / "cv.png").read_bytes().startswith(PNG)
    assert read_status(run)["state"] == "finished"
    assert yaml.safe_load((run / "recipe.yaml").read_text())["penalty"]["l2"] == [0.0, 0.01]
    result = json.loads((run / "cv.json").read_text())
    assert result["folds"] == 3 and result["members"] == 2 * 3 and len(result["candidates"]) == 2
    assert result["sizes"]["pool"] == 160 and result["sizes"]["test_set_aside"] == 40
    metrics = read_metrics(run)
    assert len(metrics) == SMALL["train"]["epochs"] * 6
    assert {row["member"] for row in metrics} == set(range(6))
    assert all(1 <= m["best_epoch"] <= 3 for m in result["per_member"])
    for row in result["candidates"]:
        folds = row["cv_accuracy_folds"]
        assert row["cv_accuracy_mean"] == pytest.approx(np.mean(folds))
        assert row["cv_accuracy_std"] == pytest.approx(np.std(folds, ddof=1))
        assert format_cell(row["cv_accuracy_mean"]) in out
    assert "cv accuracy mean" in out and "3 folds" in out and "6 members" in out
    assert "cvrun" in out


def test_search_writes_candidates_path_and_refit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = {**SMALL, "penalty": {}}
    code = main(["search", _recipe(tmp_path, recipe), "--grid", "penalty.l2=1e-4:1e-1:4", "--folds", "3",
                 "--out", "srun"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run = tmp_path / "srun"
    result = json.loads((run / "search.json").read_text())
    rows = result["candidates"]
    assert len(rows) == 4 and result["populations"] == 1 and result["members"] == 12
    assert [r["penalty.l2"] for r in rows] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    means = [r["cv_accuracy_mean"] for r in rows]
    assert result["best"]["candidate"] == int(np.argmax(means))
    assert (run / "path.png").read_bytes().startswith(PNG)
    assert read_status(run)["state"] == "finished"
    refit = run / "refit"
    assert (refit / "summary.json").is_file() and (refit / "model.pt").is_file()
    assert read_status(refit)["state"] == "finished"
    summary = json.loads((refit / "summary.json").read_text())
    assert yaml.safe_load((refit / "recipe.yaml").read_text())["penalty"]["l2"] == pytest.approx(
        result["best"]["penalty.l2"])
    assert summary["test"] == pytest.approx(result["refit"]["test"])
    assert f"best: candidate {result['best']['candidate']}" in out
    assert "refit on all training rows: test accuracy" in out


@pytest.mark.parametrize(
    "grid, needle",
    [
        ("penalty.l2", "KEY=VALUES"),
        ("penalty.l2=1e-4:1e-1", "LOW:HIGH:COUNT"),
        ("penalty.l2=0:1:4", "LOW > 0"),
        ("model.widths=[[16], [32]", "YAML list"),
    ],
)
def test_malformed_grid_exits_2_with_one_line(tmp_path, monkeypatch, capsys, grid, needle):
    monkeypatch.chdir(tmp_path)
    recipe = _recipe(tmp_path, {**SMALL, "penalty": {}})
    _one_line_error(capsys, ["search", recipe, "--grid", grid, "--out", "bad"], "--grid", needle)
    assert not (tmp_path / "bad").exists()


def test_leave_one_out_on_a_large_pool_exits_2_suggesting_repeated_splits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = {**SMALL, "data": {"name": "moons", "n_samples": 1500}}
    line = _one_line_error(capsys, ["cv", _recipe(tmp_path, recipe), "--scheme", "loo", "--out", "loo"],
                           "--scheme repeated", "1,200")
    assert "leave-1-out" in line
    assert not (tmp_path / "loo").exists()


def test_search_trials_records_every_trial_and_prints_the_pruned_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = {**SMALL, "penalty": {}, "train": {**SMALL["train"], "optimizer": "sgd", "epochs": 6}}
    code = main(["search", _recipe(tmp_path, recipe), "--trials", "8", "--batch", "4", "--sampler", "random",
                 "--space", "train.lr=1e-7:1:log", "--space", "model.widths=[[8], [16]]", "--folds", "3",
                 "--nested", "2", "--out", "trun"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads((tmp_path / "trun" / "search.json").read_text())
    rows = result["candidates"]
    assert [r["trial"] for r in rows] == list(range(8)) and result["grid"] is None
    assert result["trials"]["pruned"] == sum(r["pruned"] for r in rows)
    assert result["member_epochs"] == result["trials"]["member_epochs"] <= 8 * 3 * 6
    for row in rows:
        assert 1e-7 <= row["train.lr"] <= 1 and row["model.widths"] in ([8], [16])
        assert len(row["cv_accuracy_folds"]) == 3 and 1 <= row["epochs_trained"] <= 6
        assert row["cv_accuracy_mean"] == pytest.approx(np.mean(row["cv_accuracy_folds"]))
    assert not result["best"]["pruned"]
    assert f"best: trial {result['best']['trial']}" in out
    assert f"{result['trials']['pruned']} pruned" in out
    nested = result["nested"]
    assert len(nested["folds"]) == 2 and "nested cv (2 outer folds)" in out
    assert f"{nested['mean']:.4f} +- {nested['std']:.4f}" in out
    assert (tmp_path / "trun" / "refit" / "model.pt").is_file()


def test_cv_with_a_tiny_memory_budget_trains_in_chunks_and_writes_the_same_scores(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = _recipe(tmp_path, SMALL)
    assert main(["cv", recipe, "--folds", "3", "--out", "whole"]) == 0
    whole_out = capsys.readouterr().out
    whole = json.loads((tmp_path / "whole" / "cv.json").read_text())
    assert whole["memory"]["chunks"] == 1 and "one chunk of 6 members" in whole_out
    per_member = whole["memory"]["estimate"]["per_member"]
    budget = 2 * per_member + 3 * whole["memory"]["estimate"]["shared"]
    assert main(["cv", recipe, "--folds", "3", "--max-memory", str(budget), "--out", "chunked"]) == 0
    out = capsys.readouterr().out
    chunked = json.loads((tmp_path / "chunked" / "cv.json").read_text())
    assert chunked["memory"]["chunk_size"] == 2 and chunked["memory"]["chunks"] == 3
    assert "trained in chunks of up to 2 members (3 chunks)" in out
    assert chunked["candidates"] == whole["candidates"]
    assert chunked["per_member"] == whole["per_member"]
    assert read_metrics(tmp_path / "chunked") and len(read_metrics(tmp_path / "chunked")) == len(
        read_metrics(tmp_path / "whole"))


@pytest.mark.parametrize("argv, needles", [
    (["--trials", "3"], ["--space"]),
    (["--trials", "3", "--space", "train.lr=1:0.1"], ["--space train.lr", "LOW < HIGH"]),
    (["--grid", "penalty.l2=0,1", "--max-memory", "2XB"], ["--max-memory", "2GB"]),
    (["--grid", "penalty.l2=0,1", "--nested", "1"], ["--nested", "at least 2"]),
    (["--trials", "3", "--space", "train.lr=1e-3:1", "--halving"], ["--halving", "--pruner"]),
])
def test_search_option_mistakes_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv, needles):
    monkeypatch.chdir(tmp_path)
    recipe = _recipe(tmp_path, {**SMALL, "penalty": {}})
    _one_line_error(capsys, ["search", recipe, *argv, "--out", "bad"], *needles)
    assert not (tmp_path / "bad").exists()
