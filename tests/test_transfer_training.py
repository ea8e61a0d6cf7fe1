"""Transfer learning in training (H4): copied layers, hard freezing bit for bit, soft transfer, L2-SP."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from tamenet.api import fit
from tamenet.config import RecipeError
from tamenet.select import cross_validate

from test_training import QUIET, _assert_population_equals_separate_runs, _with

KEEP = {**QUIET, "checkpoint": True}
MODEL = {"widths": [32, 32], "norm": "batch"}


def _digits_npz(path, classes):
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    np.savez(path, X=X[keep], y=y[keep])
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A source trained on digits 0-4 and the path of the target data, digits 5-9."""
    root = tmp_path_factory.mktemp("transfer")
    source = root / "source"
    fit({"data": {"name": "npz", "path": _digits_npz(root / "low.npz", [0, 1, 2, 3, 4])}, "model": MODEL,
         "train": {"epochs": 3, "lr": 0.01}, "seed": 0, "track": KEEP}, out=source)
    return {"source": str(source), "target": _digits_npz(root / "high.npz", [5, 6, 7, 8, 9])}


def _target(runs, **changes):
    base = {"data": {"name": "npz", "path": runs["target"]}, "model": MODEL,
            "train": {"epochs": 3, "lr": 0.01, "init_from": runs["source"], "weight_decay": 1e-2},
            "penalty": {"l2": 1e-3}, "seed": 1, "track": QUIET}
    return _with(base, **changes)


def _source_state(runs):
    return torch.load(f"{runs['source']}/model.pt", weights_only=True)["state_dict"]


def test_hard_transfer_leaves_frozen_layers_bit_for_bit_and_trains_the_rest(runs):
    result = fit(_target(runs, **{"train.freeze": 2, "constraints.max_norm": 0.5, "seed": [1, 2]}))
    source, state = _source_state(runs), result.model.state_dict()
    for name in ["hidden.0.weight", "hidden.1.weight", "norms.0.weight", "norms.0.bias", "norms.1.running_mean",
                 "norms.1.running_var"]:
        for m in range(2):
            assert torch.equal(state[name][m], source[name][0]), (name, m)  # no update, decay, penalty or max-norm
    assert not torch.equal(state["output.weight"][0], state["output.weight"][1])  # the new head trained per member


def test_classes_that_differ_re_initialize_the_head_and_copy_the_rest(runs):
    copied = fit(_target(runs, **{"train.epochs": 1, "train.lr": 1e-12, "train.weight_decay": 0.0, "penalty.l2": 0.0}))
    fresh = fit(_target(runs, **{"train.epochs": 1, "train.lr": 1e-12, "train.weight_decay": 0.0, "penalty.l2": 0.0,
                                 "train.init_from": None}))
    source, state, own = _source_state(runs), copied.model.state_dict(), fresh.model.state_dict()
    torch.testing.assert_close(state["hidden.0.weight"], source["hidden.0.weight"], rtol=0, atol=1e-9)
    torch.testing.assert_close(state["output.weight"], own["output.weight"], rtol=0, atol=1e-9)  # its own init
    assert not torch.allclose(state["hidden.0.weight"], own["hidden.0.weight"])


def test_soft_transfer_with_copied_lr_zero_keeps_the_copied_weights(runs):
    result = fit(_target(runs, **{"train.copied_lr": [0.0, 1.0], "seed": [1, 1]}))
    source, state = _source_state(runs), result.model.state_dict()
    assert torch.equal(state["hidden.0.weight"][0], source["hidden.0.weight"][0])
    assert not torch.equal(state["hidden.0.weight"][1], source["hidden.0.weight"][0])


def test_l2_sp_pulls_toward_the_source_and_a_population_equals_separate_runs(runs):
    alphas = [0.0, 1.0, 30.0]
    base = _target(runs, **{"penalty.l2": 0.0, "train.weight_decay": 0.0, "train.epochs": 4,
                            "data.name": "npz"})
    _assert_population_equals_separate_runs(
        _with(base, **{"penalty.l2_sp": alphas, "penalty.l2_sp_head": [0.0, 0.01, 0.1]}),
        [_with(base, **{"penalty.l2_sp": a, "penalty.l2_sp_head": b}) for a, b in zip(alphas, [0.0, 0.01, 0.1])],
    )
    result = fit(_with(base, **{"penalty.l2_sp": alphas, "seed": [1, 1, 1]}))
    source, state = _source_state(runs), result.model.state_dict()
    distance = [float((state["hidden.0.weight"][m] - source["hidden.0.weight"][0]).norm()) for m in range(3)]
    assert distance[2] < distance[1] < distance[0]


@pytest.mark.parametrize("changes, error, words", [
    ({"model.widths": [16, 32]}, RecipeError, "layer 'hidden.0.weight' is [64, 32] per member in the source and [64, 16] here"),
    ({"train.freeze": 3}, RecipeError, "train.freeze: the model has 3 weight layers and the last one must train"),
    ({"train.init_from": None, "train.freeze": 1}, RecipeError, "freezing needs layers to copy"),
    ({"data.name": "wine", "data.path": None}, RecipeError, "the source takes 64 features, this data has 13"),
])
def test_sources_that_do_not_fit_are_refused_by_name(runs, changes, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        fit(_target(runs, **changes))


def test_a_missing_source_and_cross_validation_are_refused(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="train.init_from: no run directory"):
        fit(_target(runs, **{"train.init_from": str(tmp_path / "none")}))
    with pytest.raises(RecipeError, match="cross-validation and search with a source run"):
        cross_validate(_target(runs), folds=2)
