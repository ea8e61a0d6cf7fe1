"""Users bring their own split: a CSV column / NPZ array of train / val / test marks, arrays per part
in `fit`, and validation or test shares of 0.

Every row carries its own number as feature ``id`` (with ``data.standardize: false`` the training
tensors hold it as written), so the rows that land in each part can be read back and compared with
the marks. Test scores are recomputed by hand (cross-entropy and accuracy of the model's outputs)
on exactly the rows marked test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tamenet
from tamenet.cli import main, summary_text
from tamenet.config import DataConfig, Recipe, RecipeError, parse
from tamenet.data import SplitData, assign_rows, prepare
from tamenet.select import cross_validate, make_pool, search
from tamenet.trained import evaluate_run, load_run

pytestmark = pytest.mark.usefixtures("one_thread")

N_ROWS = 48


def _table(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, 3] with the row number first, labels [N] in {0, 1}, marks [N]) drawn from `seed`."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=N_ROWS), rng.normal(size=N_ROWS)
    y = (a + 0.3 * rng.normal(size=N_ROWS) > 0).astype(int)
    marks = np.array(["train"] * 24 + ["val"] * 12 + ["test"] * 12)
    rng.shuffle(marks)
    return np.stack([np.arange(N_ROWS), a, b], axis=1), y, marks


def _write_csv(path, X, y, marks, *, marks_name: str = "fold") -> str:
    lines = [f"id,a,b,y,{marks_name}"]
    lines += [f"{int(x[0])},{float(x[1])!r},{float(x[2])!r},{t},{m}" for x, t, m in zip(X, y, marks)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _recipe(data: dict, **train) -> dict:
    return {
        "data": data,
        "model": {"widths": [4]},
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.01, **train},
        "track": {"tensorboard": False, "plots": False},
    }


def _by_hand(model, X_raw: np.ndarray, y: np.ndarray, data: SplitData) -> dict[str, float]:
    """Mean cross-entropy and accuracy of a one-member model on raw rows, preprocessed as in training."""
    inputs = SplitData.transform_inputs(data.preprocessing(), X_raw)
    model.eval()
    with torch.no_grad():
        out = model(inputs)[0].double()
    target = torch.as_tensor(y, dtype=torch.long)
    return {"loss": float(F.cross_entropy(out, target)), "accuracy": float((out.argmax(1) == target).double().mean())}


# --- a CSV split column ---------------------------------------------------------------------------


def test_csv_split_column_trains_validates_and_tests_on_exactly_the_marked_rows(tmp_path):
    X, y, marks = _table()
    path = _write_csv(tmp_path / "tagged.csv", X, y, marks)
    result = tamenet.fit(_recipe({"name": "csv", "path": path, "target": "y", "split": "fold", "standardize": False}),
                         out=tmp_path / "run")
    data = result.data
    assert data.feature_names == ("id", "a", "b")  # the split column is no feature
    for part in ("train", "val", "test"):
        ids = getattr(data, f"X_{part}")[:, 0].numpy().astype(int)
        assert sorted(ids) == np.flatnonzero(marks == part).tolist(), part
    assert result.summary["sizes"] == {"train": 24, "val": 12, "test": 12}
    record = json.loads((tmp_path / "run" / "split.json").read_text())
    assert record["source"] == "column" and record["column"] == "fold"
    assert {p: record[p] for p in ("train", "val", "test")} == {p: np.flatnonzero(marks == p).tolist()
                                                                 for p in ("train", "val", "test")}
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data_split"]["sizes"] == record["sizes"]


def test_csv_split_test_score_equals_an_independent_evaluation_on_the_marked_test_rows(tmp_path):
    X, y, marks = _table(seed=1)
    path = _write_csv(tmp_path / "t.csv", X, y, marks)
    result = tamenet.fit(_recipe({"name": "csv", "path": path, "target": "y", "split": "fold"}, epochs=3),
                         out=tmp_path / "run")
    test = marks == "test"
    want = _by_hand(result.model, X[test], y[test], result.data)
    assert result.summary["test"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-12)
    assert result.summary["test"]["loss"] == pytest.approx(want["loss"], rel=1e-5)
    # the run directory's recipe repeats the split by itself: re-evaluation finds the same test rows
    again = evaluate_run(tmp_path / "run")
    assert again["test"]["accuracy"][0] == pytest.approx(want["accuracy"], abs=1e-12)
    assert (tmp_path / "run" / "recipe.yaml").read_text().count("split: fold") == 1


def test_csv_split_errors_are_one_line_and_name_what_was_expected_and_received(tmp_path):
    X, y, marks = _table()
    bad = marks.astype("<U10")
    bad[[3, 7]] = "valid"
    bad[11] = "Test"
    path = _write_csv(tmp_path / "bad.csv", X, y, bad)
    with pytest.raises(ValueError) as info:
        prepare(DataConfig(name="csv", path=path, target="y", split="fold"))
    message = str(info.value)
    assert "\n" not in message
    for part in ("'valid' (2 rows)", "'Test' (1 row)", "3 of 48 rows", "train, val, test", "fold"):
        assert part in message, part

    path = _write_csv(tmp_path / "ok.csv", X, y, marks)
    with pytest.raises(ValueError, match=r"no split column 'part'.*columns are: id, a, b, y, fold") as info:
        prepare(DataConfig(name="csv", path=path, target="y", split="part"))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="both name column 'y'"):
        prepare(DataConfig(name="csv", path=path, target="y", split="y"))
    no_train = _write_csv(tmp_path / "none.csv", X, y, np.where(marks == "train", "val", marks))
    with pytest.raises(ValueError, match="at least one row marked 'train'"):
        prepare(DataConfig(name="csv", path=no_train, target="y", split="fold"))
    with pytest.raises(ValueError, match="data.split is not used by data set 'wine'"):
        prepare(DataConfig(name="wine", split="fold"))


def test_a_split_column_with_a_changed_share_is_refused_and_the_defaults_are_accepted(tmp_path):
    X, y, marks = _table()
    path = _write_csv(tmp_path / "s.csv", X, y, marks)
    for key, value in (("val", 0.1), ("test", 0.0)):
        with pytest.raises(RecipeError, match=rf"data\.{key}: the split is predefined by data\.split \('fold'\)"):
            prepare(parse(DataConfig, {"name": "csv", "path": path, "target": "y", "split": "fold", key: value}))
    written = parse(DataConfig, {"name": "csv", "path": path, "target": "y", "split": "fold", "val": 0.3, "test": 0.2})
    assert prepare(written).sizes() == {"train": 24, "val": 12, "test": 12}


def test_npz_split_array_follows_the_same_rules(tmp_path):
    X, y, marks = _table()
    file = tmp_path / "d.npz"
    np.savez(file, X=X, y=y, part=marks)
    data = prepare(DataConfig(name="npz", path=str(file), split="part", standardize=False))
    assert sorted(data.X_test[:, 0].numpy().astype(int)) == np.flatnonzero(marks == "test").tolist()
    assert sorted(data.X_train[:, 0].numpy().astype(int)) == np.flatnonzero(marks == "train").tolist()
    assert data.n_features == 3
    with pytest.raises(ValueError, match=r"no split array 'fold' \(data.split\); found: X, y, part"):
        prepare(DataConfig(name="npz", path=str(file), split="fold"))
    bad = marks.astype("<U10")
    bad[0] = "holdout"
    np.savez(file, X=X, y=y, part=bad)
    with pytest.raises(ValueError, match=r"'holdout' \(1 row\).*the first at row 0"):
        prepare(DataConfig(name="npz", path=str(file), split="part"))
    np.savez(file, X=X, y=y, part=marks[:-1])
    with pytest.raises(ValueError, match=r"expected shape \[48\].*got shape \[47\]"):
        prepare(DataConfig(name="npz", path=str(file), split="part"))
    np.savez(file, X=X, y=y, part=np.zeros(N_ROWS, dtype=int))
    with pytest.raises(ValueError, match="expected the strings train, val, test, got values of dtype int"):
        prepare(DataConfig(name="npz", path=str(file), split="part"))


# --- arrays for each part -------------------------------------------------------------------------


def test_fit_with_arrays_per_part_uses_them_as_given_and_records_the_sizes(tmp_path):
    X, y, marks = _table(seed=2)
    parts = {p: (X[marks == p], y[marks == p]) for p in ("train", "val", "test")}
    result = tamenet.fit(_recipe({"standardize": False}), X=parts["train"][0], y=parts["train"][1],
                         X_val=parts["val"][0], y_val=parts["val"][1], X_test=parts["test"][0],
                         y_test=parts["test"][1], out=tmp_path / "run")
    for part in ("train", "val", "test"):  # in the caller's order, nothing moved between parts
        got = getattr(result.data, f"X_{part}")[:, 0].numpy().astype(int).tolist()
        assert got == parts[part][0][:, 0].astype(int).tolist(), part
    want = _by_hand(result.model, *parts["test"], result.data)
    assert result.summary["test"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-12)
    assert result.summary["test"]["loss"] == pytest.approx(want["loss"], rel=1e-5)
    record = json.loads((tmp_path / "run" / "split.json").read_text())
    assert record["source"] == "caller" and "caller" in record["given_by"]
    assert record["sizes"] == {"train": 24, "val": 12, "test": 12}
    assert "train" not in record  # the caller's parts: sizes only

    only_test = tamenet.fit(_recipe({}), X=parts["train"][0], y=parts["train"][1],
                            X_test=parts["test"][0], y_test=parts["test"][1])
    assert only_test.data.sizes() == {"train": 24, "val": 0, "test": 12}
    assert only_test.summary["validation"]["early_stopping"] is False and "val" not in only_test.summary


def test_mismatched_part_arrays_give_one_line_errors_naming_both_shapes():
    X, y, _ = _table()
    cases = [
        (dict(X_val=X[:5, :2], y_val=y[:5]), ("X_val", "[3]", "[2]", "[5, 2]")),
        (dict(X_test=X[:5], y_test=y[:4]), ("X_test has 5 rows", "y_test has 4")),
        (dict(X_val=X[:5]), ("X_val without y_val",)),
        (dict(y_test=y[:5]), ("y_test without X_test",)),
    ]
    for extra, words in cases:
        with pytest.raises(ValueError) as info:
            tamenet.fit(_recipe({}), X=X, y=y, **extra)
        assert "\n" not in str(info.value)
        for word in words:
            assert word in str(info.value), (extra.keys(), word)
    with pytest.raises(ValueError, match="X has 48 rows but y has 47"):
        prepare(DataConfig(), X=X, y=y[:-1], X_test=X, y_test=y)
    with pytest.raises(ValueError, match="without X, y"):
        prepare(DataConfig(), X_val=X, y_val=y)
    with pytest.raises(RecipeError, match=r"data\.test: the split is predefined by arrays.*got 0\.5"):
        prepare(DataConfig(test=0.5), X=X, y=y, X_val=X, y_val=y)


# --- shares of 0 ---------------------------------------------------------------------------------


def test_val_zero_trains_on_every_non_test_row_and_the_summary_says_early_stopping_was_off(tmp_path):
    raw = _recipe({"name": "wine", "val": 0, "test": 0.2}, epochs=4, early_stopping={"patience": 1})
    result = tamenet.fit(raw, out=tmp_path / "run")
    record = json.loads((tmp_path / "run" / "split.json").read_text())
    assert record["val"] == [] and len(record["train"]) == result.summary["sizes"]["train"] == 178 - 36
    assert sorted(record["train"] + record["test"]) == list(range(178))
    # the test rows are those of the usual split (the test share is drawn first), the rest all train
    assert record["test"] == assign_rows(DataConfig(name="wine"))[1].test.tolist()
    summary = result.summary
    assert "val" not in summary and "generalization_gap" not in summary
    assert summary["validation"]["early_stopping"] is False and summary["validation"]["restore_best"] is False
    assert "patience 1" in summary["validation"]["warning"]
    assert summary["stopped_early"] is False and summary["epochs_run"] == 4 and summary["best_epoch"] == 4
    text = summary_text(summary)
    assert "validation: no validation rows" in text and "warning: train.early_stopping.patience 1" in text
    with pytest.raises(ValueError, match="ensemble.*validation rows"):
        tamenet.fit(raw, ensemble=2)


def test_test_zero_gives_no_test_entry_and_evaluate_load_and_plots_work(tmp_path, capsys):
    raw = _recipe({"name": "wine", "val": 0.25, "test": 0})
    raw["track"]["plots"] = True
    result = tamenet.fit(raw, out=tmp_path / "run")
    assert "test" not in result.summary and result.summary["sizes"]["test"] == 0
    assert (tmp_path / "run" / "curves.png").is_file()
    assert json.loads((tmp_path / "run" / "split.json").read_text())["test"] == []
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "val" in printed and "test" not in printed.replace(str(tmp_path), "")
    assert load_run(tmp_path / "run").predict(np.zeros((2, 13)))["label"].shape == (2,)

    both = tamenet.fit(_recipe({"name": "wine", "val": 0, "test": 0}))
    assert both.data.sizes() == {"train": 178, "val": 0, "test": 0}
    assert set(both.summary) >= {"train", "validation"} and not {"val", "test"} & set(both.summary)
    with pytest.raises(RecipeError, match=r"data\.val: expected a value >= 0\.0"):
        parse(Recipe, {"data": {"val": -0.1}})
    with pytest.raises(ValueError, match=r"data\.val: expected a share in \[0, 1\)"):
        prepare(DataConfig(name="wine", val=1.0))


def test_cli_train_prints_the_validation_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_recipe({"name": "wine", "val": 0, "test": 0})))
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "validation: no validation rows: early stopping and restore_best were off" in out


# --- cross-validation and search -----------------------------------------------------------------


def test_cv_pool_is_the_train_and_val_rows_and_the_marked_test_rows_stay_out_of_every_fold(tmp_path):
    X, y, marks = _table(seed=3)
    path = _write_csv(tmp_path / "cv.csv", X, y, marks)
    raw = _recipe({"name": "csv", "path": path, "target": "y", "split": "fold"})
    pool = make_pool(tamenet.recipes.load_recipe(raw))
    assert sorted(pool.X[:, 0].astype(int)) == np.flatnonzero(marks != "test").tolist()  # the pool is raw
    assert pool.test_rows == 12
    result = cross_validate(raw, folds=2)
    assert result["sizes"]["pool"] == 36 and result["sizes"]["test_set_aside"] == 12

    found = search(raw, grid=["penalty.l2=0,0.01"], folds=2, out=tmp_path / "search")
    assert found["sizes"]["pool"] == 36
    refit = load_run(tmp_path / "search" / "refit")
    data = prepare(refit.recipe.data)
    test = marks == "test"
    want = _by_hand(refit.model, X[test], y[test], data)
    assert found["refit"]["test"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-12)
    assert found["refit"]["test"]["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_search_with_test_zero_reports_no_test_score(tmp_path):
    raw = _recipe({"name": "wine", "test": 0})
    pool = make_pool(tamenet.recipes.load_recipe(raw))
    assert len(pool.y) == 178 and pool.test_rows == 0
    found = search(raw, grid=["penalty.l2=0,0.01"], folds=2)
    assert found["refit"]["test"] is None and math.isfinite(found["refit"]["val"]["accuracy"])
