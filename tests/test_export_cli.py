"""`tamenet export`: a run's member as one self-contained file (torch.export `.pt2`, ONNX) that takes raw
rows and answers probabilities or values in the target's units, checked against the population itself
(`TrainedModel.predict`, which standardizes with NumPy and averages nothing for one member) on every
model kind; onnxruntime runs the ONNX file with batch sizes other than the traced one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_diabetes, load_digits

from tamenet.api import fit
from tamenet.cli import main
from tamenet.delivery import delivered_model, export_model
from tamenet.trained import load_run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"train": {"epochs": 1, "batch_size": 128}, "track": {"tensorboard": False, "plots": False}}
CASES: dict[str, dict] = {
    # feature selection (an input mask), input and hidden dropout, BatchNorm, weight standardization
    "mlp": {"model": {"widths": [12, 12], "norm": "batch", "dropout": [0.1, 0.2, 0.2], "input_features": 20,
                      "weight_norm": "standardize"}},
    "linear": {"model": {"kind": "linear"}},
    # skip connections, LayerNorm after the activation, spectral normalization, classic dropout
    "mlp_residual": {"model": {"widths": [10, 10], "residual": True, "norm": "layer", "norm_position": "after",
                               "weight_norm": "spectral", "dropout": 0.3, "dropout_mode": "classic"}},
    "cnn": {"model": {"kind": "cnn", "channels": [4, 6], "norm": "batch", "head_widths": [8], "dropout": 0.2}},
    "resnet": {"model": {"kind": "resnet", "channels": [4, 8], "norm": "group", "input_features": 40}},
    "regression": {"data": {"name": "diabetes"}, "model": {"widths": [8], "norm": "batch", "weight_norm": "minmax"}},
}
RAW = {"digits": load_digits().data[:37], "diabetes": load_diabetes().data[:37]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """case -> run directory, each trained once (one epoch)."""
    root = tmp_path_factory.mktemp("export")
    cache: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in cache:
            fit({**TINY, **CASES[case], "seed": 3}, out=root / case)
            cache[case] = root / case
        return cache[case]

    return get


def _rows(run: Path) -> np.ndarray:
    return RAW[load_run(run).recipe.data.name].astype(np.float32)


def _reference(run: Path, rows: np.ndarray, member: int = 0) -> np.ndarray:
    pred = load_run(run).predict(rows, member=member)
    return pred["probabilities"] if "probabilities" in pred else pred["value"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_and_pt_give_the_population_answers_on_raw_rows(case, runs, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (the 'export' extra)")
    run = runs(case)
    rows = _rows(run)
    want = _reference(run, rows)
    scale = 1.0 if load_run(run).task == "classification" else float(np.abs(want).max())
    onnx_file, meta = export_model(load_run(run), "onnx", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["rows"]
    for batch in (rows, rows[:1]):  # neither is the traced batch of 4 rows: the batch axis is dynamic
        got = session.run(None, {"rows": batch})[0]
        np.testing.assert_allclose(got, want[: len(batch)], rtol=0, atol=1e-5 * scale)
    pt_file, _ = export_model(load_run(run), "pt", tmp_path / "m.pt2")
    program = torch.export.load(str(pt_file)).module()
    got = program(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
    if meta["task"] == "classification":
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)  # probabilities, not logits
    assert meta["outputs"]["shape"][0] == "batch" and meta["inputs"]["shape"] == ["batch", rows.shape[1]]


def test_the_metadata_records_features_classes_recipe_and_provenance(runs, tmp_path):
    run = runs("mlp")
    assert main(["export", str(run), "--format", "pt"]) == 0
    meta = json.loads((run / "export" / "model-m0.pt2.json").read_text())
    info = json.loads((run / "run.json").read_text())
    assert meta["feature_names"] == [f"pixel_{i}_{j}" for i in range(8) for j in range(8)]
    assert meta["classes"] == list(range(10))
    assert meta["recipe"] == yaml.safe_load((run / "recipe.yaml").read_text())
    assert meta["data_fingerprint"] == info["data_fingerprint"] and len(meta["data_fingerprint"]) == 64
    assert meta["code_version"] == info["code_version"]
    assert meta["trained_with"]["torch"] == info["torch"] and meta["exported_with"]["torch"] == torch.__version__


def test_a_population_exports_the_member_asked_for(tmp_path):
    run = tmp_path / "pop"
    fit({**TINY, "data": {"name": "moons", "n_samples": 120}, "model": {"widths": [6]}, "seed": [0, 1]}, out=run)
    rows = np.random.default_rng(0).standard_normal((9, 2)).astype(np.float32)
    program = torch.export.load(str(export_model(load_run(run), "pt", member=1)[0])).module()
    np.testing.assert_allclose(program(torch.from_numpy(rows)).numpy(), _reference(run, rows, member=1), atol=1e-6)
    assert not np.allclose(_reference(run, rows, member=0), _reference(run, rows, member=1))
    assert (run / "export" / "model-m1.pt2.json").is_file()


def test_a_regression_model_answers_in_the_target_units(runs):
    trained = load_run(runs("regression"))
    rows = torch.from_numpy(_rows(runs("regression")))
    values = delivered_model(trained)(rows)
    outputs = trained.to_torch(0).eval()(rows)[:, 0]  # standardized targets
    target = trained.preprocessing["target_scaler"]
    expected = outputs * float(np.ravel(target["std"])[0]) + float(np.ravel(target["mean"])[0])
    torch.testing.assert_close(values, expected)
    assert values.shape == (len(rows),) and float(np.ravel(target["std"])[0]) > 50  # diabetes: std 77 in its units


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tamenet export: error: ")
    return err


def test_the_command_refuses_a_missing_member_choice_or_run(capsys, tmp_path):
    run = tmp_path / "pop"
    fit({**TINY, "data": {"name": "moons", "n_samples": 120}, "model": {"widths": [4]}, "seed": [0, 1]}, out=run)
    assert "population of 2 members" in _one_line_error(capsys, ["export", str(run), "--format", "onnx"])
    assert "[0, 1], got 5" in _one_line_error(capsys, ["export", str(run), "--format", "pt", "--member", "5"])
    assert "no trained model" in _one_line_error(capsys, ["export", str(tmp_path / "none"), "--format", "pt"])
    (tmp_path / "dir.pt2").mkdir()
    assert "directory" in _one_line_error(capsys, ["export", str(run), "--format", "pt", "--member", "0",
                                                   "--out", str(tmp_path / "dir.pt2")])
