"""The training loop end to end: penalties against closed forms and scikit-learn, early stopping,
populations against separate runs, reproducibility, divergence, clipping, run directories, resume."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso

from tamenet.api import fit
from tamenet.config import Recipe, parse, set_key
from tamenet.data import prepare, split_indices
from tamenet.models import build_model
from tamenet.recipes import load_recipe
from tamenet.track import read_metrics, read_status
from tamenet.train import member_seeds
from tamenet.trained import load_run

NO_EARLY_STOP = {"patience": None, "restore_best": False}
QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}


def _with(recipe: dict, **changes) -> dict:
    """A copy of `recipe` with dotted keys set (`config.set_key`): _with(r, **{"train.lr": 0.1})."""
    return functools.reduce(lambda raw, change: set_key(raw, *change), changes.items(), recipe)


def _member_history(history: list[dict], member: int) -> np.ndarray:
    return np.array([[r["epoch"], r["train_loss"], r["val_loss"]] for r in history if r["member"] == member])


def _member_state(model: torch.nn.Module, member: int) -> dict[str, torch.Tensor]:
    return {k: v[member] for k, v in model.state_dict().items() if v.dim() >= 1}


def _weight_norm(result, member: int) -> float:
    return math.sqrt(sum(float(r.param[member].detach().square().sum()) for r in result.model.param_roles() if r.role == "weight"))


# ------------------------------------------------------------------ penalties against closed forms


@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_l1_proximal_linear_model_matches_sklearn_lasso_coefficients_and_zeros(alpha):
    """mean 1/2 (y - Xw - b)^2 + alpha ||w||_1 is Lasso's objective; ISTA (SGD step + soft threshold) reaches its minimum."""
    X, y = load_diabetes(return_X_y=True)
    recipe = {
        "data": {"task": "regression", "test": 0.0, "val": 0.2, "standardize": True},
        "penalty": {"l1": alpha, "l1_mode": "proximal"},
        "train": {"optimizer": "sgd", "lr": 0.45, "batch_size": "full", "epochs": 400, "early_stopping": NO_EARLY_STOP},
        "seed": 0,
    }
    result = fit(recipe, X=X, y=y, module=torch.nn.Linear(10, 1))
    Xt = result.data.X_train.double().numpy()
    yt = result.data.y_train.double().numpy()
    lasso = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(Xt, yt)
    w = result.model.module.weight.detach().double().numpy().ravel()
    np.testing.assert_allclose(w, lasso.coef_, atol=1e-3)
    np.testing.assert_array_equal(w == 0.0, lasso.coef_ == 0.0)  # exact zeros in the same places
    assert 0 < int((w == 0).sum()) < len(w)  # the penalty is active but does not zero everything
    assert abs(result.model.module.bias.item() - lasso.intercept_) < 1e-3


def test_input_noise_on_linear_regression_converges_to_ridge_with_lambda_noise_variance():
    """E_eps 1/2 (y - w.(x + eps))^2 = 1/2 (y - w.x)^2 + s^2/2 ||w||^2, so SGD with noise std s finds ridge(s^2)."""
    rng = np.random.default_rng(0)
    n, features, s = 1000, 4, 0.7
    X = rng.normal(size=(n, features)) @ rng.normal(size=(features, features))  # correlated features
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.5 * rng.normal(size=n)
    epochs, tail = 150, []

    def keep_tail(record, trainer):
        if record.epoch > epochs // 2:  # average the iterates of the second half (Polyak averaging)
            tail.append(trainer.model.module.weight.detach().double().numpy().ravel().copy())

    recipe = {
        "data": {"task": "regression", "test": 0.0, "val": 0.2},
        "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 100, "epochs": epochs, "input_noise": s,
                  "early_stopping": NO_EARLY_STOP},
        "seed": 0,
    }
    result = fit(recipe, X=X, y=y, module=torch.nn.Linear(features, 1), callbacks=[keep_tail])
    Xt = result.data.X_train.double().numpy()
    yt = result.data.y_train.double().numpy()
    Xc, yc = Xt - Xt.mean(0), yt - yt.mean()  # the unpenalized intercept absorbs the means
    N = len(yc)
    ridge = np.linalg.solve(Xc.T @ Xc / N + s**2 * np.eye(features), Xc.T @ yc / N)
    ols = np.linalg.solve(Xc.T @ Xc / N, Xc.T @ yc / N)
    learned = np.mean(tail, axis=0)
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    assert rel(ridge, ols) > 0.3  # the two solutions are far apart ...
    assert rel(learned, ridge) < 0.03  # ... and noise training lands on ridge
    assert rel(learned, ols) > 0.3


def test_decoupled_weight_decay_equals_l2_for_plain_sgd_and_both_shrink_weights():
    """SGD: (1 - lr wd) w - lr g  ==  w - lr (g + l2 w); both shrink ||W|| against no penalty."""
    recipe = {
        "data": {"name": "moons", "n_samples": 200, "noise": 0.3},
        "model": {"widths": [32]},
        "penalty": {"l2": [0.0, 0.0, 0.1], "penalize_bias": True},  # weight decay acts on biases too
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "epochs": 20, "weight_decay": [0.0, 0.1, 0.0],
                  "early_stopping": NO_EARLY_STOP},
        "seed": 0,
    }
    result = fit(recipe)
    norms = [_weight_norm(result, m) for m in range(3)]
    assert norms[1] < 0.9 * norms[0]
    assert norms[2] < 0.9 * norms[0]
    for name, decayed in _member_state(result.model, 1).items():
        torch.testing.assert_close(decayed, _member_state(result.model, 2)[name], rtol=1e-4, atol=1e-6, msg=name)


# ------------------------------------------------------------------ early stopping


def test_early_stopping_restores_the_weights_of_the_best_epoch():
    patience = 5
    recipe = {
        "data": {"name": "moons", "n_samples": 120, "noise": 0.35},
        "model": {"widths": [64, 64]},
        "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 16, "epochs": 80,
                  "early_stopping": {"patience": patience}},
        "seed": 0,
    }
    snapshots, improved = {}, {}

    def record(rec, trainer):
        snapshots[rec.epoch] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        improved[rec.epoch] = rec.improved[0]

    result = fit(recipe, callbacks=[record])
    summary = result.summary
    best, run = summary["best_epoch"], summary["epochs_run"]
    val = [r["val_loss"] for r in result.history]
    assert summary["stopped_early"] is True and run < 80
    assert best == int(np.argmin(val)) + 1  # the first epoch with the lowest validation loss
    assert run == best + patience  # stopped after `patience` epochs without improvement
    assert improved[best] and not any(improved[e] for e in range(best + 1, run + 1))
    final = result.model.state_dict()
    for name, value in snapshots[best].items():
        assert torch.equal(final[name], value), name
    assert any(not torch.equal(final[n], v) for n, v in snapshots[run].items())  # not simply the last weights


# ------------------------------------------------------------------ populations = separate runs


POP_BASE = {
    "data": {"name": "moons", "n_samples": 200, "noise": 0.3},
    "model": {"widths": [16, 16], "activation": "relu"},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 5},
    "track": QUIET,
    "seed": 0,
}


def _assert_population_equals_separate_runs(population: dict, singles: list[dict]) -> None:
    pop = fit(population)
    assert pop.model.members == len(singles)
    for m, single in enumerate(singles):
        alone = fit(single)
        np.testing.assert_allclose(_member_history(pop.history, m), _member_history(alone.history, 0),
                                   rtol=1e-4, atol=1e-6, err_msg=f"member {m} history")
        mine = _member_state(pop.model, m)
        for name, value in _member_state(alone.model, 0).items():
            torch.testing.assert_close(mine[name], value, rtol=1e-4, atol=1e-6, msg=f"member {m}: {name}")


def test_population_of_l2_strengths_equals_separate_runs():
    strengths = [0.0, 1e-3, 1e-2]
    _assert_population_equals_separate_runs(
        _with(POP_BASE, **{"penalty.l2": strengths}),
        [_with(POP_BASE, **{"penalty.l2": v}) for v in strengths],
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_population_of_seeds_with_dropout_noise_and_batchnorm_equals_separate_runs(optimizer):
    base = _with(POP_BASE, **{"model.dropout": 0.2, "model.norm": "batch", "train.input_noise": 0.1,
                              "train.optimizer": optimizer, "train.momentum": 0.9 if optimizer == "sgd" else 0.0,
                              "train.lr": 0.05 if optimizer == "sgd" else 0.01})
    seeds = [0, 1, 2]
    _assert_population_equals_separate_runs(_with(base, seed=seeds), [_with(base, seed=s) for s in seeds])


# ------------------------------------------------------------------ reproducibility


def test_seeded_runs_are_bitwise_reproducible_and_another_seed_differs():
    recipe = _with(POP_BASE, **{"model.dropout": 0.2, "model.norm": "batch", "train.input_noise": 0.1, "train.epochs": 3})
    first, second = fit(recipe), fit(recipe)
    other = fit(_with(recipe, seed=1))
    state1, state2, state3 = first.model.state_dict(), second.model.state_dict(), other.model.state_dict()
    assert state1.keys() == state2.keys()
    for name in state1:
        assert torch.equal(state1[name], state2[name]), name
    assert first.history == second.history
    assert any(not torch.equal(state1[n], state3[n]) for n in state1 if state1[n].is_floating_point())
    assert first.history != other.history


# ------------------------------------------------------------------ divergence


DIVERGE_BASE = {
    "data": {"name": "diabetes"},
    "model": {"widths": [16]},
    "train": {"optimizer": "sgd", "batch_size": 32, "epochs": 6},
    "track": QUIET,
    "seed": 0,
}


def test_diverging_member_is_frozen_without_disturbing_the_others():
    result = fit(_with(DIVERGE_BASE, **{"train.lr": [1e-2, 1e6]}))
    alone = fit(_with(DIVERGE_BASE, **{"train.lr": 1e-2}))
    members = result.summary["per_member"]
    assert members[0]["diverged_at_epoch"] is None
    assert members[1]["diverged_at_epoch"] == 1
    assert result.summary["epochs_run"] == 6  # the healthy member trains on
    np.testing.assert_allclose(_member_history(result.history, 0), _member_history(alone.history, 0), rtol=1e-4, atol=1e-6)
    for name, value in _member_state(alone.model, 0).items():
        torch.testing.assert_close(_member_state(result.model, 0)[name], value, rtol=1e-4, atol=1e-6)
    for name, value in result.model.state_dict().items():  # the diverged member is back at its best (finite) weights
        assert torch.isfinite(value).all(), name
    assert math.isfinite(members[0]["test"]["rmse"])


def test_single_run_that_diverges_stops_keeps_finite_best_weights_and_says_so(tmp_path):
    result = fit(_with(DIVERGE_BASE, **{"train.lr": 1e6, "track": {}}), out=tmp_path / "run")
    summary = result.summary
    assert summary["diverged_at_epoch"] == 1
    assert summary["epochs_run"] == 1  # a population of one stops
    for name, value in result.model.state_dict().items():
        assert torch.isfinite(value).all(), name
    status = read_status(tmp_path / "run")
    assert status["state"] == "failed"
    assert "epoch 1" in status["message"] and "NaN" in status["message"]
    reloaded = load_run(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in reloaded.model.state_dict().values())


# ------------------------------------------------------------------ gradient clipping


def test_clip_by_norm_bounds_each_sgd_step_by_lr_times_threshold():
    lr, thresholds = 1.0, [1e-3, 1e-2]  # steps of 1e-3 and 1e-2: well above float32 rounding of the weights
    recipe = load_recipe({
        "data": {"name": "moons", "n_samples": 200},
        "model": {"widths": [16]},
        "train": {"optimizer": "sgd", "lr": lr, "momentum": 0.0, "batch_size": "full", "epochs": 3,
                  "clip": {"by": "norm", "max": thresholds}, "early_stopping": NO_EARLY_STOP},
        "track": QUIET,
        "seed": 0,
    })
    data = prepare(recipe.data)
    initial = build_model(recipe.model, n_in=data.n_features, n_out=data.n_outputs, seeds=member_seeds(recipe))
    states = [{n: p.detach().clone() for n, p in initial.named_parameters()}]
    fit(recipe, callbacks=[lambda rec, tr: states.append({n: p.detach().clone() for n, p in tr.model.named_parameters()})])
    assert len(states) == 4  # full batch: one step per epoch
    for before, after in zip(states[:-1], states[1:]):
        for m, threshold in enumerate(thresholds):
            step = math.sqrt(sum(float((after[n][m].double() - before[n][m].double()).square().sum()) for n in before))
            # the unclipped gradient is far larger than the threshold, so the step is exactly lr * threshold
            assert step <= lr * threshold * (1 + 1e-4)
            assert step >= lr * threshold * (1 - 1e-3)


# ------------------------------------------------------------------ run directory and resume


def test_run_directory_holds_every_artifact_and_model_pt_reproduces_predictions(tmp_path):
    widths = [8]
    recipe = {
        "data": {"name": "moons", "n_samples": 200},
        "model": {"widths": widths},
        "train": {"optimizer": "adam", "lr": 0.01, "epochs": 4},
        "seed": 0,
    }
    out = tmp_path / "run"
    result = fit(recipe, out=out)
    assert result.run_dir == out

    assert parse(Recipe, yaml.safe_load((out / "recipe.yaml").read_text())) == result.recipe

    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == list(range(1, result.summary["epochs_run"] + 1))
    assert result.summary["epochs_run"] == 4

    summary = json.loads((out / "summary.json").read_text())
    for split in ("train", "val", "test"):
        assert set(summary[split]) == {"loss", "accuracy"}
    gap = summary["generalization_gap"]
    assert gap["loss"] == pytest.approx(summary["val"]["loss"] - summary["train"]["loss"])
    assert gap["accuracy"] == pytest.approx(summary["train"]["accuracy"] - summary["val"]["accuracy"])
    assert summary["best_epoch"] == result.summary["best_epoch"]
    assert summary["stopped_early"] is False
    assert summary["parameters"] == (2 * 8 + 8) + (8 * 2 + 2)  # one member: W1, b1, W2, b2
    assert summary["wall_time_s"] > 0

    run_info = json.loads((out / "run.json").read_text())
    assert run_info["seeds"] == [0]
    assert isinstance(run_info["code_version"], str) and run_info["code_version"]
    assert run_info["data_fingerprint"] == result.data.fingerprint

    trained = load_run(out)
    X_raw = result.data.scaler.inverse(result.data.X_test.numpy())
    result.model.eval()
    with torch.no_grad():
        expected = result.model(result.data.X_test)
    torch.testing.assert_close(trained.outputs(X_raw), expected, rtol=1e-5, atol=1e-5)

    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    assert read_status(out)["state"] == "finished"


RESUME_RECIPE = {
    "data": {"name": "moons", "n_samples": 120, "noise": 0.35},
    "model": {"widths": [64, 64], "dropout": 0.1},
    "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 16, "epochs": 6},
    "track": {"tensorboard": False, "plots": False},
    "seed": 0,
}


def test_interrupted_run_resumed_from_last_checkpoint_equals_an_uninterrupted_run(tmp_path):
    uninterrupted = fit(RESUME_RECIPE)
    val = [row["val_loss"] for row in uninterrupted.history]
    # interrupt at an epoch that is not the best so far, so the best weights differ from where training stood
    stop = next(k for k in range(2, len(val)) if min(val[:k]) < val[k - 1])

    def interrupt(record, trainer):
        if record.epoch == stop:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    part = fit(RESUME_RECIPE, out=out, callbacks=[interrupt])
    assert part.summary["interrupted"] is True and part.summary["epochs_run"] == stop
    assert part.summary["best_epoch"] != stop
    assert read_status(out)["state"] == "interrupted"

    resumed = fit(resume=out)
    assert len(resumed.history) == 6
    assert resumed.history == uninterrupted.history
    for name, value in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert len(read_metrics(out)) == 6
    assert read_status(out)["state"] == "finished"


def test_finished_run_resumed_with_more_epochs_continues_its_history(tmp_path):
    out = tmp_path / "run"
    first = fit(_with(RESUME_RECIPE, **{"train.epochs": 3}), out=out)
    assert len(first.history) == 3
    more = fit(resume=out, overrides=["train.epochs=5"])
    assert [r["epoch"] for r in more.history] == [1, 2, 3, 4, 5]
    assert more.history[:3] == first.history
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------ regression end to end


def test_regression_on_diabetes_reports_test_rmse_in_original_units(tmp_path):
    recipe = {
        "data": {"name": "diabetes", "val": 0.3, "test": 0.2},
        "model": {"widths": [32]},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 30},
        "track": {"tensorboard": False, "plots": False},
        "seed": 0,
    }
    result = fit(recipe, out=tmp_path / "run")
    assert result.summary["task"] == "regression" and result.summary["metric"] == "rmse"

    X, y = load_diabetes(return_X_y=True, scaled=False)  # the raw data, split again by tamenet's rule
    _, _, test = split_indices(y, "regression", val=0.3, test=0.2, seed=0, stratify=True)
    predicted = load_run(tmp_path / "run").predict(X[test])["value"]
    rmse = float(np.sqrt(np.mean((predicted - y[test]) ** 2)))
    assert result.summary["test"]["rmse"] == pytest.approx(rmse, rel=1e-4)
    assert rmse < 0.9 * y[test].std()  # it learned something, in the target's own units (std ~77)
