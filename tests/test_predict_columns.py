"""`tamenet predict` maps the input's columns to the training features by name.

A header must name every training feature (any order; the training target may be there and is
ignored); anything else is refused naming the missing and the unexpected columns. A file whose
first row is all numbers has no header: exactly the features, in training order. A checkpoint
saved without feature names falls back to taking the columns by position.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tamenet.api import fit
from tamenet.cli import header_columns, main
from tamenet.trained import load_run

FEATURES = ("alpha", "beta", "gamma")
TARGET = "label"


def _write_csv(path: Path, header: list[str] | None, rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> Path:
    """A tiny model trained on a CSV file with named features alpha, beta, gamma (on different scales) and a label."""
    root = tmp_path_factory.mktemp("columns")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3)) * np.array([1.0, 10.0, 0.1]) + np.array([0.0, 5.0, -1.0])
    y = (X[:, 0] + X[:, 1] / 10 > 0.5).astype(int)
    _write_csv(root / "train.csv", [*FEATURES, TARGET], [[*np.round(r, 4), int(t)] for r, t in zip(X, y)])
    recipe = {"data": {"name": "csv", "path": str(root / "train.csv"), "target": TARGET},
              "model": {"widths": [4]}, "train": {"optimizer": "adam", "lr": 0.01, "epochs": 2},
              "track": {"tensorboard": False, "plots": False}, "seed": 0}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(recipe, out=root / "run")
    finally:
        torch.set_num_threads(threads)
    return root / "run"


@pytest.fixture()
def rows() -> np.ndarray:
    """New rows in training order (alpha, beta, gamma)."""
    return np.round(np.random.default_rng(1).normal(size=(11, 3)) * np.array([1.0, 10.0, 0.1]), 4)


def _predict(capsys, run: Path, file: Path) -> str:
    code = main(["predict", str(run), "--input", str(file)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _refused(capsys, run: Path, file: Path, *needles: str) -> str:
    code = main(["predict", str(run), "--input", str(file)])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("tamenet predict: error: ") and "Traceback" not in out + err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_training_feature_names_are_saved_with_the_model(csv_run):
    trained = load_run(csv_run)
    assert trained.feature_names == FEATURES
    assert trained.target_name == TARGET


def test_shuffled_columns_give_the_same_predictions_as_the_training_order(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "ordered.csv", list(FEATURES), rows.tolist())
    order = [2, 0, 1]
    _write_csv(tmp_path / "shuffled.csv", [FEATURES[i] for i in order], rows[:, order].tolist())
    ordered = _predict(capsys, csv_run, tmp_path / "ordered.csv")
    assert _predict(capsys, csv_run, tmp_path / "shuffled.csv") == ordered
    # the check has teeth: the same numbers taken by position predict differently
    trained = load_run(csv_run)
    assert not np.allclose(trained.predict(rows[:, order])["probabilities"], trained.predict(rows)["probabilities"])


def test_the_training_target_column_is_ignored(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "ordered.csv", list(FEATURES), rows.tolist())
    _write_csv(tmp_path / "with_target.csv", ["gamma", TARGET, "alpha", "beta"],
               [[r[2], 1, r[0], r[1]] for r in rows.tolist()])
    assert _predict(capsys, csv_run, tmp_path / "with_target.csv") == _predict(capsys, csv_run, tmp_path / "ordered.csv")


def test_a_renamed_column_is_refused_naming_it(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "renamed.csv", ["alpha", "betta", "gamma"], rows.tolist())
    _refused(capsys, csv_run, tmp_path / "renamed.csv", "missing beta;", "unexpected betta",
             "expected 3 feature columns named as in training (alpha, beta, gamma, in any order")


def test_a_missing_column_is_refused_naming_it(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "short.csv", ["gamma", "alpha"], rows[:, [2, 0]].tolist())
    _refused(capsys, csv_run, tmp_path / "short.csv", "missing beta;", "unexpected none", "got 2 columns")


def test_an_unknown_extra_column_is_refused(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "extra.csv", ["id", *FEATURES], [[i, *r] for i, r in enumerate(rows.tolist())])
    _refused(capsys, csv_run, tmp_path / "extra.csv", "missing none", "unexpected id",
             f"the target '{TARGET}' may be there too")


def test_a_column_named_twice_is_refused(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "twice.csv", [*FEATURES, "beta"], [[*r, r[1]] for r in rows.tolist()])
    _refused(capsys, csv_run, tmp_path / "twice.csv", "names a column more than once: beta")


def test_a_file_without_header_is_read_in_training_order(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "ordered.csv", list(FEATURES), rows.tolist())
    _write_csv(tmp_path / "bare.csv", None, rows.tolist())
    assert _predict(capsys, csv_run, tmp_path / "bare.csv") == _predict(capsys, csv_run, tmp_path / "ordered.csv")
    _write_csv(tmp_path / "bare4.csv", None, [[*r, 0.0] for r in rows.tolist()])
    _refused(capsys, csv_run, tmp_path / "bare4.csv", "read without a header", "expected 3 values per row", "got 4")


def test_bad_cells_and_rows_name_the_line_and_column(csv_run, tmp_path, capsys):
    (tmp_path / "cell.csv").write_text("alpha,beta,gamma\n1,2,3\n1,two,3\n")
    _refused(capsys, csv_run, tmp_path / "cell.csv", "line 3", "column 'beta'", "'two'")
    (tmp_path / "ragged.csv").write_text("alpha,beta,gamma\n1,2,3\n1,2\n")
    _refused(capsys, csv_run, tmp_path / "ragged.csv", "line 3", "expected 3 fields", "got 2")
    (tmp_path / "header_only.csv").write_text("alpha,beta,gamma\n")
    _refused(capsys, csv_run, tmp_path / "header_only.csv", "expected data rows after the header")


def test_a_header_with_a_byte_order_mark_is_read(csv_run, rows, tmp_path, capsys):
    _write_csv(tmp_path / "ordered.csv", list(FEATURES), rows.tolist())
    text = (tmp_path / "ordered.csv").read_text()
    (tmp_path / "bom.csv").write_text(text, encoding="utf-8-sig")
    assert _predict(capsys, csv_run, tmp_path / "bom.csv") == _predict(capsys, csv_run, tmp_path / "ordered.csv")


def test_a_checkpoint_without_feature_names_takes_columns_by_position(csv_run, rows, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(csv_run, old)
    payload = torch.load(old / "model.pt", weights_only=True)
    del payload["preprocessing"]["feature_names"]
    torch.save(payload, old / "model.pt")
    assert load_run(old).feature_names is None
    _write_csv(tmp_path / "ordered.csv", list(FEATURES), rows.tolist())
    _write_csv(tmp_path / "other_names.csv", ["a", "b", "c"], rows.tolist())
    expected = _predict(capsys, csv_run, tmp_path / "ordered.csv")
    code = main(["predict", str(old), "--input", str(tmp_path / "other_names.csv")])
    out, err = capsys.readouterr()
    assert code == 0 and out == expected
    assert "saved without its feature names" in err and "taken by position" in err
    _write_csv(tmp_path / "two.csv", ["a", "b"], rows[:, :2].tolist())
    code = main(["predict", str(old), "--input", str(tmp_path / "two.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("tamenet predict: error: ")
    assert "expected 3 feature columns" in err[-1] and "by position" in err[-1] and "got 2 columns" in err[-1]


@pytest.mark.parametrize(
    "header, columns",
    [(["a", "b", "c"], [0, 1, 2]), (["c", "a", "b"], [1, 2, 0]), (["y", "b", "c", "a"], [3, 1, 2])],
)
def test_header_columns_maps_each_feature_to_its_column(header, columns):
    assert header_columns(header, ("a", "b", "c"), 3, target="y", where="f.csv") == columns


def test_header_columns_lists_many_missing_names_briefly():
    names = tuple(f"pixel_{i}" for i in range(64))
    with pytest.raises(ValueError, match="missing pixel_0, .*, pixel_7 and 56 more; unexpected x"):
        header_columns(["x"], names, 64, target=None, where="f.csv")
