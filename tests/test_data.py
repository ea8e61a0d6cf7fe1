"""Behaviour of tamenet.data: built-in data sets, user files, splits, train-only scaling, preprocessing records."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from tamenet.config import DataConfig
from tamenet.data import (
    DATASETS,
    Dataset,
    SplitData,
    Standardizer,
    dataset_from_arrays,
    list_datasets,
    load_dataset,
    prepare,
    split_indices,
)

EXPECTED = {  # name: (n_samples, n_features, task, n_classes, image_shape)
    "digits": (1797, 64, "classification", 10, (1, 8, 8)),
    "diabetes": (442, 10, "regression", None, None),
    "breast_cancer": (569, 30, "classification", 2, None),
    "wine": (178, 13, "classification", 3, None),
    "mnist1d": (5000, 40, "classification", 10, (1, 40)),
    "moons": (1000, 2, "classification", 2, None),
    "spirals": (1000, 2, "classification", 2, None),
}


@pytest.fixture(scope="module")
def builtins() -> dict[str, Dataset]:
    return {name: load_dataset(DataConfig(name=name)) for name in DATASETS}


# --- built-in data sets ---------------------------------------------------------------------------


def test_registry_holds_the_documented_builtins():
    # digits_masks (a dense target per pixel) is checked in tests/test_equivariance.py
    assert set(DATASETS) == set(EXPECTED) | {"digits_masks"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_loads_with_documented_shape_and_task(builtins, name):
    data = builtins[name]
    n, f, task, k, image_shape = EXPECTED[name]
    assert data.X.shape == (n, f) and data.X.dtype == np.float32
    assert data.y.shape == (n,)
    assert data.task == task
    assert data.image_shape == image_shape
    assert len(data.feature_names) == f
    assert np.isfinite(data.X).all()
    if task == "classification":
        assert data.y.dtype == np.int64
        assert len(data.classes) == k
        assert sorted(np.unique(data.y).tolist()) == list(range(k))  # every index 0..K-1 used
    else:
        assert data.y.dtype == np.float32 and data.classes is None


def test_list_datasets_agrees_with_the_loaded_data(builtins):
    listed = {row["name"]: row for row in list_datasets()}
    assert set(listed) == set(DATASETS)
    for name, row in listed.items():
        data = builtins[name]
        assert (row["n_samples"], row["n_features"], row["task"]) == (len(data.y), data.X.shape[1], data.task)
        assert row["n_classes"] == (None if data.classes is None else len(data.classes))
        assert row["description"]


def test_labels_map_to_indices_in_unique_order_and_keep_the_originals(builtins):
    cancer = builtins["breast_cancer"]
    assert cancer.classes == ("benign", "malignant")
    data = dataset_from_arrays(np.zeros((4, 2)), np.array(["b", "a", "c", "a"]))
    assert data.task == "classification" and data.classes == ("a", "b", "c")
    assert data.y.tolist() == [1, 0, 2, 0]


def test_mnist1d_leaves_global_random_states_alone():
    np.random.seed(123)
    random.seed(7)
    torch.manual_seed(5)
    np_before, py_before, torch_before = np.random.get_state(), random.getstate(), torch.get_rng_state()
    data = load_dataset(DataConfig(name="mnist1d", n_samples=200))
    assert data.X.shape == (200, 40)
    np_after = np.random.get_state()
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1]) and np_before[2:] == np_after[2:]
    assert random.getstate() == py_before
    assert torch.equal(torch.get_rng_state(), torch_before)


def test_synthetic_sets_follow_their_options_and_seed():
    a = load_dataset(DataConfig(name="spirals", n_samples=300, noise=0.0, seed=1))
    b = load_dataset(DataConfig(name="spirals", n_samples=300, noise=0.0, seed=1))
    c = load_dataset(DataConfig(name="spirals", n_samples=300, noise=0.0, seed=2))
    assert a.X.shape == (300, 2) and np.array_equal(a.X, b.X) and not np.array_equal(a.X, c.X)
    assert np.bincount(a.y).tolist() == [150, 150]
    # Without noise every point lies on its arm: |x| = theta / pi with theta in [0, 3 pi].
    assert np.linalg.norm(a.X, axis=1).max() <= 3.0 + 1e-5
    moons = load_dataset(DataConfig(name="moons", n_samples=50, noise=0.1, seed=3))
    assert moons.X.shape == (50, 2)


def test_options_a_data_set_does_not_read_are_errors():
    with pytest.raises(ValueError, match="n_samples.*digits"):
        load_dataset(DataConfig(name="digits", n_samples=100))
    with pytest.raises(ValueError, match="regression"):
        load_dataset(DataConfig(name="diabetes", task="classification"))


def test_unknown_name_lists_valid_names_and_suggests_the_close_one():
    with pytest.raises(ValueError) as info:
        load_dataset(DataConfig(name="digit"))
    message = str(info.value)
    assert "did you mean 'digits'" in message
    for name in [*DATASETS, "csv", "npz"]:
        assert name in message


# --- user files -----------------------------------------------------------------------------------


def _write_csv(path, rows):
    path.write_text("\n".join(",".join(str(c) for c in row) for row in rows) + "\n")
    return str(path)


def test_csv_round_trip_with_string_target(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)).round(4)
    labels = np.array(["cat", "dog", "emu"])[np.arange(30) % 3]
    rows = [["a", "species", "b", "c"]] + [[x[0], lab, x[1], x[2]] for x, lab in zip(X, labels)]
    path = _write_csv(tmp_path / "animals.csv", rows)
    data = load_dataset(DataConfig(name="csv", path=path, target="species"))
    assert data.task == "classification"
    assert data.classes == ("cat", "dog", "emu")
    assert data.feature_names == ("a", "b", "c")
    np.testing.assert_allclose(data.X, X.astype(np.float32))
    assert [data.classes[i] for i in data.y] == labels.tolist()
    assert data.name == "animals"


def test_csv_numeric_targets_infer_the_task(tmp_path):
    rows = [["x", "y"]] + [[i, i % 2] for i in range(20)]
    data = load_dataset(DataConfig(name="csv", path=_write_csv(tmp_path / "c.csv", rows), target="y"))
    assert data.task == "classification" and data.classes == (0, 1)
    rows = [["x", "y"]] + [[i, i * 0.5] for i in range(20)]
    data = load_dataset(DataConfig(name="csv", path=_write_csv(tmp_path / "r.csv", rows), target="y"))
    assert data.task == "regression" and data.y.dtype == np.float32


def test_csv_errors_name_the_problem(tmp_path):
    good = _write_csv(tmp_path / "good.csv", [["height", "weight", "label"], [1, 2, "a"], [3, 4, "b"]])
    with pytest.raises(ValueError, match="no target column 'lable'.*height, weight, label"):
        load_dataset(DataConfig(name="csv", path=good, target="lable"))
    with pytest.raises(ValueError, match="height, weight, label"):
        load_dataset(DataConfig(name="csv", path=good))  # target missing from the recipe
    bad = _write_csv(tmp_path / "bad.csv", [["height", "colour", "label"], [1, "red", "a"], [3, "blue", "b"]])
    with pytest.raises(ValueError, match="feature column 'colour'"):
        load_dataset(DataConfig(name="csv", path=bad, target="label"))
    holes = _write_csv(tmp_path / "holes.csv", [["h", "label"], [1, "a"], ["", "b"], ["nan", "a"], [2, "b"]])
    with pytest.raises(ValueError, match="2 of 4 rows have missing values"):
        load_dataset(DataConfig(name="csv", path=holes, target="label"))
    headless = _write_csv(tmp_path / "headless.csv", [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="header"):
        load_dataset(DataConfig(name="csv", path=headless, target="1"))
    missing = str(tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_dataset(DataConfig(name="csv", path=missing, target="y"))


def test_npz_flattens_images_and_keeps_their_shape(tmp_path):
    X = np.arange(6 * 3 * 4, dtype=np.float64).reshape(6, 3, 4)
    y = np.array([0, 1, 0, 1, 0, 1])
    np.savez(tmp_path / "imgs.npz", X=X, y=y)
    data = load_dataset(DataConfig(name="npz", path=str(tmp_path / "imgs.npz")))
    assert data.X.shape == (6, 12) and data.image_shape == (1, 3, 4)
    np.testing.assert_array_equal(data.X[2], X[2].ravel())


def test_npz_errors_name_keys_and_lengths(tmp_path):
    np.savez(tmp_path / "keys.npz", features=np.zeros((4, 2)), labels=np.zeros(4))
    with pytest.raises(ValueError, match="'X' and 'y'.*features, labels"):
        load_dataset(DataConfig(name="npz", path=str(tmp_path / "keys.npz")))
    np.savez(tmp_path / "short.npz", X=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match="5 rows but y has 4"):
        load_dataset(DataConfig(name="npz", path=str(tmp_path / "short.npz")))
    X = np.ones((5, 2))
    X[1, 0] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.arange(5) * 1.5)
    with pytest.raises(ValueError, match="1 of 5 rows"):
        load_dataset(DataConfig(name="npz", path=str(tmp_path / "nan.npz")))
    with pytest.raises(ValueError, match="data.path"):
        load_dataset(DataConfig(name="npz"))


# --- splits ---------------------------------------------------------------------------------------


def test_splits_are_disjoint_cover_everything_and_follow_the_seed():
    y = np.arange(500) % 4
    train, val, test = split_indices(y, "classification", val=0.3, test=0.2, seed=0, stratify=True)
    assert len(test) == 100 and len(val) == 120 and len(train) == 280  # test first, val of the rest
    joined = np.concatenate([train, val, test])
    assert len(np.unique(joined)) == 500 and sorted(joined.tolist()) == list(range(500))
    for part in (train, val, test):
        assert np.all(np.diff(part) > 0)  # sorted
    again = split_indices(y, "classification", val=0.3, test=0.2, seed=0, stratify=True)
    other = split_indices(y, "classification", val=0.3, test=0.2, seed=1, stratify=True)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(test, other[2])


def test_stratified_split_keeps_class_shares():
    y = np.repeat(np.arange(5), [300, 150, 90, 40, 17])
    share = np.bincount(y) / len(y)
    for part in split_indices(y, "classification", val=0.25, test=0.2, seed=3, stratify=True):
        counts = np.bincount(y[part], minlength=5)
        assert np.all(np.abs(counts - share * len(part)) <= 1.0)


def test_zero_test_share_gives_an_empty_test_split_and_regression_ignores_stratify():
    y = np.linspace(0.0, 1.0, 40)
    train, val, test = split_indices(y, "regression", val=0.25, test=0.0, seed=0, stratify=True)
    assert len(test) == 0 and len(val) == 10 and len(train) == 30


def test_split_errors_say_which_split_or_class():
    y = np.array([0] * 10 + [1])
    with pytest.raises(ValueError, match="'1' \\(1\\)"):
        split_indices(y, "classification", val=0.3, test=0.2, seed=0, stratify=True)
    with pytest.raises(ValueError, match="training split would be empty"):
        split_indices(np.arange(3.0), "regression", val=0.9, test=0.5, seed=0, stratify=False)
    with pytest.raises(ValueError, match="10 classes"):
        split_indices(np.arange(40) % 10, "classification", val=0.1, test=0.1, seed=0, stratify=True)


# --- scaling and SplitData ------------------------------------------------------------------------


def test_scaler_is_fitted_on_the_training_split_only():
    data = prepare(DataConfig(name="wine", seed=0))
    X_train, X_val = data.X_train.numpy(), data.X_val.numpy()
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(X_train.std(axis=0), 1.0, atol=1e-4)
    assert np.abs(X_val.mean(axis=0)).max() > 0.05  # validation is not forced to mean 0
    raw = load_dataset(DataConfig(name="wine"))
    on_all = Standardizer.fit(raw.X)
    assert not np.allclose(on_all.mean, data.scaler.mean)
    train, _, _ = split_indices(raw.y, raw.task, val=0.3, test=0.2, seed=0, stratify=True)
    np.testing.assert_allclose(data.scaler.mean, raw.X[train].astype(np.float64).mean(axis=0), rtol=1e-6)


def test_standardizer_handles_constant_columns_torch_and_round_trips():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    scaler = Standardizer.fit(X)
    assert scaler.std[1] == 1.0
    Z = scaler.transform(X)
    assert np.isfinite(Z).all() and np.allclose(Z[:, 1], 0.0)
    T = scaler.transform(torch.tensor(X, dtype=torch.float32))
    assert isinstance(T, torch.Tensor) and T.dtype == torch.float32
    np.testing.assert_allclose(T.numpy(), Z, atol=1e-6)
    np.testing.assert_allclose(scaler.inverse(Z), X)
    back = Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(back.mean, scaler.mean)
    with pytest.raises(ValueError, match="expected 2 features.*received 3"):
        scaler.transform(np.zeros((1, 3)))


def test_prepare_regression_standardizes_the_target_on_train():
    data = prepare(DataConfig(name="diabetes"))
    assert data.task == "regression" and data.n_outputs == 1
    assert data.y_train.dtype == torch.float32 and data.y_train.ndim == 1
    assert abs(float(data.y_train.mean())) < 1e-4 and abs(float(data.y_train.std(unbiased=False)) - 1) < 1e-4
    raw = load_dataset(DataConfig(name="diabetes"))
    assert data.target_scaler.std > 10  # the target's spread in original units
    back = data.target_scaler.inverse(data.y_train.numpy())
    assert np.isin(np.round(back), raw.y).all()


def test_prepare_classification_tensors_and_sizes():
    data = prepare(DataConfig())
    assert data.name == "digits" and data.n_features == 64 and data.n_outputs == 10
    assert data.sizes() == {"train": 1005, "val": 432, "test": 360}
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.image_shape == (1, 8, 8) and data.target_scaler is None
    plain = prepare(DataConfig(standardize=False))
    assert plain.scaler is None and float(plain.X_train.max()) == 16.0


def test_prepare_from_arrays_infers_the_task():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    data = prepare(DataConfig(), X=X, y=(X[:, 0] > 0).astype(int))
    assert data.task == "classification" and data.n_outputs == 2 and data.name == "arrays"
    data = prepare(DataConfig(), X=X, y=X.sum(axis=1))
    assert data.task == "regression" and data.target_scaler is not None
    data = prepare(DataConfig(), X=X, y=np.arange(60))  # 60 distinct integers: more than 50 classes
    assert data.task == "regression"
    with pytest.raises(TypeError, match="both X and y"):
        prepare(DataConfig(), X=X)


def test_fingerprint_is_stable_and_sensitive():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 3)), (np.arange(40) % 2)
    first = prepare(DataConfig(), X=X, y=y).fingerprint
    assert len(first) == 64 and first == prepare(DataConfig(seed=9), X=X.copy(), y=y.copy()).fingerprint
    changed = X.copy()
    changed[7, 2] += 0.5
    assert prepare(DataConfig(), X=changed, y=y).fingerprint != first
    assert prepare(DataConfig(), X=X, y=1 - y).fingerprint != first
    assert prepare(DataConfig()).fingerprint == prepare(DataConfig()).fingerprint


def test_preprocessing_record_rebuilds_the_inputs_and_checks_their_width():
    data = prepare(DataConfig(name="breast_cancer"))
    pre = json.loads(json.dumps(data.preprocessing()))
    assert pre["classes"] == ["benign", "malignant"] and pre["task"] == "classification"
    raw = load_dataset(DataConfig(name="breast_cancer"))
    _, _, test = split_indices(raw.y, raw.task, val=0.3, test=0.2, seed=0, stratify=True)
    again = SplitData.transform_inputs(pre, raw.X[test])
    torch.testing.assert_close(again, data.X_test)
    with pytest.raises(ValueError) as info:
        SplitData.transform_inputs(pre, np.zeros((2, 29)))
    assert "30" in str(info.value) and "29" in str(info.value)
