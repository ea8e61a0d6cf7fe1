"""Reproduction suite: published results the lectures rest on, re-run with tamenet's own code.

    .venv/bin/python bench/reproduce.py                     # every case (about 15-25 CPU minutes, 1 thread)
    .venv/bin/python bench/reproduce.py l1_lasso early_stop # some cases; the others keep their last row

Each case prints the published figure, ours and whether its stated criterion holds, and the script
rewrites `bench/REPRODUCTION.md` (never edit it by hand) from `bench/reproduction.json`, which
keeps the last result of every case. The criteria are fixed here, before any run; no case is tuned to its
answer on a test split (the settings are the papers' or stated with the case, and the test rows are only
scored). A case that does not reproduce is reported as such, with what was tried.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bench_*.py helpers beside this script
RESULTS = HERE / "reproduction.json"
TABLE = HERE / "REPRODUCTION.md"
QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
NO_STOP = {"patience": None, "restore_best": False}


def _fit(recipe: dict, **arrays):
    from tamenet import fit

    return fit(recipe, **arrays)


def _members(result) -> list[dict]:
    return result.summary.get("per_member", [result.summary])


def _spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.fmean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


# ---------------------------------------------------------------------------------------------- cases

def mnist1d_ranking() -> dict[str, Any]:
    """Greydanus (2020), MNIST-1D: logistic ~32 %, MLP ~68 % (train ~100 %), CNN ~94 % test accuracy.

    The notebook's set-up: the package's standard data set (4,000 train / 1,000 test rows, from
    `make_dataset(get_dataset_args())`, never downloaded), Adam lr 1e-2, batch 100, 6,000 steps
    (150 epochs), last weights scored; MLP 40-100-100-10; CNN 3 conv layers of 25 channels, kernels 5/3/3,
    stride 2, flattened into the linear read-out. Three seeds, one population per model.
    Criterion (stated before running): CNN > MLP > logistic on every seed, and each mean inside the
    published band widened by 2 points: logistic 30-34 % -> 28-36 %, MLP 65-68 % -> 63-70 %, CNN 92-94 % ->
    90-96 %; the MLP's training accuracy at least 98 %.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    state = random.getstate(), np.random.get_state()  # the package reseeds the global generators
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
    X, y, Xt, yt = raw["x"], raw["y"], raw["x_test"], raw["y_test"]
    steps_per_epoch = math.ceil(len(y) / 100)
    epochs = 6000 // steps_per_epoch
    models = {
        "logistic": {"kind": "linear"},
        "mlp": {"kind": "mlp", "widths": [100, 100], "activation": "relu", "init": "he_uniform"},
        "cnn": {"kind": "cnn", "channels": [25, 25, 25], "kernel_size": [5, 3, 3], "stride": 2, "pool": "none",
                "readout": "flatten", "input_shape": [1, 40], "init": "he_uniform"},
    }
    bands = {"logistic": (0.28, 0.36), "mlp": (0.63, 0.70), "cnn": (0.90, 0.96)}
    seeds = [0, 1, 2]
    scores, train_acc = {}, {}
    for name, model in models.items():
        recipe = {"data": {"standardize": False}, "model": model, "penalty": {"l2": 0.0},
                  "train": {"optimizer": "adam", "lr": 1e-2, "batch_size": 100, "epochs": epochs,
                            "early_stopping": NO_STOP}, "track": QUIET, "seed": seeds}
        result = _fit(recipe, X=X, y=y, X_test=Xt, y_test=yt)
        scores[name] = [m["test"]["accuracy"] for m in _members(result)]
        train_acc[name] = [m["train"]["accuracy"] for m in _members(result)]
    ranked = all(c > m > lg for c, m, lg in zip(scores["cnn"], scores["mlp"], scores["logistic"]))
    inside = {k: bands[k][0] <= statistics.fmean(v) <= bands[k][1] for k, v in scores.items()}
    holds = ranked and all(inside.values()) and min(train_acc["mlp"]) >= 0.98
    ours = "; ".join(f"{k} {_spread(v)} (train {statistics.fmean(train_acc[k]):.3f})" for k, v in scores.items())
    return {"published": "logistic ~32 %, MLP ~65-68 % (train ~100 %), CNN 92-94 % (Greydanus 2020, notebook)",
            "ours": f"test accuracy, mean (min-max) over seeds {seeds}: {ours}",
            "criterion": "CNN > MLP > logistic on every seed; means in the bands widened by 2 points; MLP train >= 0.98",
            "holds": holds, "detail": {"ranked": ranked, "inside": inside, "scores": scores, "train": train_acc,
                                       "epochs": epochs}}


LASSO_OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "lr": 0.45, "epochs": 600, "schedule": {"kind": "constant"}},
    "sgd+momentum": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 500, "schedule": {"kind": "constant"}},
    "nesterov": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "epochs": 500,
                 "schedule": {"kind": "constant"}},
    "rmsprop": {"optimizer": "rmsprop", "lr": 0.01, "momentum": 0.5, "epochs": 500, "schedule": {"kind": "cosine"}},
    "adam": {"optimizer": "adam", "lr": 0.1, "epochs": 500, "schedule": {"kind": "cosine"}},
}


def _diabetes_linear(train: dict, penalty: dict, **extra) -> dict:
    return {"data": {"task": "regression", "val": 0.05, "test": 0.0, "standardize": True}, "model": {"kind": "linear"},
            "penalty": penalty, "train": {"batch_size": "full", "early_stopping": NO_STOP, **train, **extra},
            "track": QUIET, "seed": 0}


def _linear_weights(result) -> np.ndarray:
    roles = {r.name: r.param.detach().double().numpy() for r in result.model.param_roles()}
    return roles["output.weight"].reshape(result.model.members, -1)


def l1_lasso() -> dict[str, Any]:
    """Tibshirani (1996): L1 gives exact zeros. A linear model with `penalty.l1` on `diabetes` against
    scikit-learn's `Lasso` on the same training rows, at three strengths, with each optimizer.
    Criterion: coefficients within 1e-4 and the same zero pattern, every strength and optimizer."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Lasso

    X, y = load_diabetes(return_X_y=True)
    strengths = [0.01, 0.05, 0.1]
    worst, same, zeros = {}, True, {}
    for name, train in LASSO_OPTIMIZERS.items():
        result = _fit(_diabetes_linear(train, {"l1": strengths}), X=X, y=y)
        w = _linear_weights(result)
        Xt, yt = result.data.X_train.double().numpy(), result.data.y_train.double().numpy()
        errors = []
        for m, alpha in enumerate(strengths):
            lasso = Lasso(alpha=alpha, tol=1e-14, max_iter=1_000_000).fit(Xt, yt)
            errors.append(float(np.abs(w[m] - lasso.coef_).max()))
            same &= bool(np.array_equal(w[m] == 0, lasso.coef_ == 0))
            zeros[alpha] = int((lasso.coef_ == 0).sum())
        worst[name] = max(errors)
    holds = same and max(worst.values()) <= 1e-4
    return {"published": "L1 gives exact zeros; the lasso solution (Tibshirani 1996), scikit-learn Lasso",
            "ours": ("max |w - lasso| per optimizer: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
                     + f"; zero patterns equal: {same}; zeros of 10 at l1 {strengths}: {list(zeros.values())}"),
            "criterion": "within 1e-4 and the same zeros at 3 strengths, 5 optimizers", "holds": holds,
            "detail": {"max_abs_error": worst, "zeros": zeros}}


def input_noise_ridge() -> dict[str, Any]:
    """Bishop (1995): training with Gaussian input noise of variance sigma^2 is, for linear regression,
    Tikhonov (ridge) with lambda = sigma^2: E[1/2 (y - (x + e) w)^2] = 1/2 (y - x w)^2 + sigma^2/2 ||w||^2.
    tamenet's loss is 1/2 mean squared error and `l2_form: half` adds l2/2 ||w||^2, so the expected noisy
    loss is the ridge objective with l2 = sigma^2. Trained by full-batch SGD with a cosine schedule (the
    noise averages out as the step shrinks). Criterion: ||w_noise - w_ridge|| / ||w_ridge|| <= 3 % at each
    sigma, and the noise-free least-squares weights farther from w_ridge than that (the test has teeth)."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    sigmas = [0.3, 0.5, 1.0]
    train = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 4000, "schedule": {"kind": "cosine"},
             "input_noise": sigmas}
    result = _fit(_diabetes_linear(train, {"l2": 0.0}), X=X, y=y)
    w = _linear_weights(result)
    Xt, yt = result.data.X_train.double().numpy(), result.data.y_train.double().numpy()
    Xc, yc = Xt - Xt.mean(0), yt - yt.mean()
    n = len(yt)
    ols = np.linalg.lstsq(Xc, yc, rcond=None)[0]
    gaps, ols_gaps = [], []
    for m, s in enumerate(sigmas):
        ridge = np.linalg.solve(Xc.T @ Xc / n + s**2 * np.eye(Xt.shape[1]), Xc.T @ yc / n)
        gaps.append(float(np.linalg.norm(w[m] - ridge) / np.linalg.norm(ridge)))
        ols_gaps.append(float(np.linalg.norm(ols - ridge) / np.linalg.norm(ridge)))
    holds = max(gaps) <= 0.03 and min(ols_gaps) > 0.03
    return {"published": "input noise sigma^2 = Tikhonov with lambda = sigma^2 (Bishop 1995)",
            "ours": (f"relative distance to ridge at sigma {sigmas}: " + ", ".join(f"{g:.2%}" for g in gaps)
                     + "; least squares (no noise) to the same ridge: " + ", ".join(f"{g:.0%}" for g in ols_gaps)),
            "criterion": "within 3 % of ridge, least squares farther", "holds": holds,
            "detail": {"noise_vs_ridge": gaps, "ols_vs_ridge": ols_gaps}}


def he_vs_xavier() -> dict[str, Any]:
    """He et al. (2015): a 30-layer ReLU MLP (width 256, mnist1d) from Xavier weights stalls at ln 10, from He
    weights it trains; the activation scale through depth follows Var(z_l)/Var(z_{l-1}) = n Var(W) / 2.
    Run with `bench_init.py` (tamenet's loop; SGD momentum 0.9, lr 0.01, batch 112, 300 steps, 2 seeds).
    Criterion: Xavier's training loss within 0.01 of ln 10 = 2.303 after the steps, He's below 2.0; the
    measured std(z_30)/std(z_1) within 2x of the formula for both (mean over seeds)."""
    import bench_init

    with tempfile.TemporaryDirectory() as tmp:
        result = bench_init.main(["--steps", "300", "--seeds", "2", "--threads", "1", "--out", f"{tmp}/init.json"])
    rows = {r["init"]: r for r in result["rows"]}
    loss_key = next(k for k in result["rows"][0] if k.startswith("train loss step"))
    he, xa = rows["he_normal"], rows["xavier_normal"]
    ratio = {k: r["z ratio (mean)"] / r["predicted ratio"] for k, r in rows.items()}
    holds = (abs(xa[loss_key] - math.log(10)) <= 0.01 and he[loss_key] < 2.0
             and all(0.5 <= v <= 2.0 for v in ratio.values()))
    return {"published": "Xavier stalls on a 30-layer ReLU net, He trains; std ratio 1 (He) vs 2^(-29/2) (Xavier)",
            "ours": (f"{loss_key}: He {he[loss_key]:.3f}, Xavier {xa[loss_key]:.3f} (ln 10 = 2.303); measured / "
                     f"predicted std ratio: He {ratio['he_normal']:.2f}, Xavier {ratio['xavier_normal']:.2f} "
                     f"(predicted {xa['predicted ratio']:.2e})"),
            "criterion": "Xavier within 0.01 of ln 10, He below 2.0; ratios within 2x", "holds": holds,
            "detail": {"rows": result["rows"]}}


def residual_degradation() -> dict[str, Any]:
    """He et al. (2016): a deep plain network trains worse than a shallow one (degradation) and identity
    shortcuts remove it. `bench_residual.py` (tamenet MLPs of width 128 on mnist1d, BatchNorm after the ReLU,
    SGD lr 0.01 momentum 0.9, batch 128, 10 epochs, 2 seeds). Criterion: the plain 30-layer net's training
    loss above the plain 4-layer net's (degradation) and the residual 30-layer net's at or below the 4-layer's."""
    import bench_residual

    with tempfile.TemporaryDirectory() as tmp:
        result = bench_residual.main(["--norms", "batch", "--position", "after", "--epochs", "10", "--seeds", "2",
                                      "--checkpoints", "1,5,10", "--threads", "1", "--out", f"{tmp}/res.json"])
    loss = {r["model"]: statistics.fmean(r["final_train_loss"]) for r in result["runs"]}
    holds = loss["plain 30"] > loss["plain 4"] and loss["residual 30"] <= loss["plain 4"]
    return {"published": "deep plain nets train worse than shallow ones; shortcuts remove it (He et al. 2016)",
            "ours": "training loss after 10 epochs: " + ", ".join(f"{k} {v:.3f}" for k, v in loss.items()),
            "criterion": "plain 30 > plain 4 >= residual 30 (training loss)", "holds": holds, "detail": loss}


def _dropout_curve(name: str, sizes: list[int], widths: list[int], epochs: int, seeds: list[int]) -> dict:
    """Test error with and without dropout (input 0.2, hidden 0.5) at each training-set size: one population
    per size (dropout off and on x seeds); early stopping on a fixed validation split; the test split only scored."""
    from tamenet.config import DataConfig
    from tamenet.data.datasets import load_dataset as load

    raw = load(DataConfig(name=name))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(raw.y))
    test, val, pool = order[:len(order) // 5], order[len(order) // 5: len(order) // 5 + 300], order[len(order) // 5 + 300:]
    out = {"sizes": [], "plain": [], "dropout": []}
    for n in sizes:
        if n > len(pool):
            continue
        rows = pool[:n]
        members = [(p, s) for p in (0.0, 1.0) for s in seeds]
        dropout = [[0.2 * p for p, _ in members]] + [[0.5 * p for p, _ in members]] * len(widths)
        recipe = {"data": {"standardize": True}, "model": {"widths": widths, "dropout": dropout},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 32, "epochs": epochs,
                            "early_stopping": {"patience": 30, "restore_best": True}},
                  "track": QUIET, "seed": [s for _, s in members]}
        result = _fit(recipe, X=raw.X[rows], y=raw.y[rows], X_val=raw.X[val], y_val=raw.y[val],
                      X_test=raw.X[test], y_test=raw.y[test])
        errors = [1 - m["test"]["accuracy"] for m in _members(result)]
        k = len(seeds)
        out["sizes"].append(n)
        out["plain"].append(statistics.fmean(errors[:k]))
        out["dropout"].append(statistics.fmean(errors[k:]))
    return out


def dropout_vs_size() -> dict[str, Any]:
    """Srivastava et al. (2014), figure 10: dropout's benefit (test error without minus with) is small at the
    smallest training sets, largest in the middle and shrinks at the largest. MLP 2 x 256 (digits) / 2 x 512
    (mnist1d), dropout 0.2 input / 0.5 hidden, SGD lr 0.05 momentum 0.9, batch 32, early stopping (patience 30)
    on 300 fixed validation rows, 2 seeds. Criterion, per data set: the largest benefit lies at an interior
    size, above both the smallest size's and the largest size's benefit."""
    cases = {"digits": ([30, 60, 120, 250, 500, 1000], [256, 256], 150),
             "mnist1d": ([100, 250, 500, 1000, 2000, 3700], [512, 512], 150)}
    curves, verdicts = {}, {}
    for name, (sizes, widths, epochs) in cases.items():
        curve = _dropout_curve(name, sizes, widths, epochs, [0, 1])
        benefit = [p - d for p, d in zip(curve["plain"], curve["dropout"])]
        peak = int(np.argmax(benefit))
        verdicts[name] = 0 < peak < len(benefit) - 1 and benefit[peak] > benefit[0] and benefit[peak] > benefit[-1]
        curve["benefit"] = benefit
        curves[name] = curve
    ours = "; ".join(f"{k}: benefit (error points) at sizes {c['sizes']}: "
                     + ", ".join(f"{100 * b:+.1f}" for b in c["benefit"]) for k, c in curves.items())
    return {"published": "dropout helps little at the smallest sizes, most in the middle, less at the largest "
                         "(Srivastava et al. 2014, fig. 10)",
            "ours": ours, "criterion": "peak benefit at an interior size, per data set", "holds": all(verdicts.values()),
            "detail": {"curves": curves, "verdicts": verdicts}}


def maxnorm_lr() -> dict[str, Any]:
    """Srivastava et al. (2014), section 5.1: max-norm regularization lets dropout nets use larger learning rates.
    A dropout MLP (digits, 64-512-512-10, dropout 0.2 / 0.5, SGD momentum 0.95, 40 epochs, no early stopping),
    learning rates 0.01-1 x max-norm c = 3 or off, 2 seeds, all one population. Criterion: the largest learning
    rate whose validation accuracy is within 2 points of the best of all members is larger with max-norm."""
    lrs = [0.01, 0.03, 0.1, 0.3, 1.0]
    members = [(lr, c, s) for c in (0.0, 3.0) for lr in lrs for s in (0, 1)]
    recipe = {"data": {"name": "digits"}, "model": {"widths": [512, 512], "dropout": [0.2, 0.5, 0.5]},
              "constraints": {"max_norm": [c for _, c, _ in members]},
              "train": {"optimizer": "sgd", "lr": [lr for lr, _, _ in members], "momentum": 0.95, "batch_size": 64,
                        "epochs": 40, "early_stopping": NO_STOP}, "track": QUIET, "seed": [s for _, _, s in members]}
    result = _fit(recipe)
    val = [m["val"]["accuracy"] if m.get("diverged_at_epoch") is None else 0.0 for m in _members(result)]
    table: dict[float, dict[float, float]] = {0.0: {}, 3.0: {}}
    for (lr, c, _), v in zip(members, val):
        table[c].setdefault(lr, []).append(v)
    means = {c: {lr: statistics.fmean(v) for lr, v in row.items()} for c, row in table.items()}
    best = max(max(row.values()) for row in means.values())
    usable = {c: max((lr for lr, v in row.items() if v >= best - 0.02), default=0.0) for c, row in means.items()}
    holds = usable[3.0] > usable[0.0]
    ours = "; ".join(f"{'max-norm 3' if c else 'no max-norm'}: " + ", ".join(f"lr {lr:g} {v:.3f}" for lr, v in row.items())
                     for c, row in means.items())
    return {"published": "max-norm lets dropout use larger learning rates (Srivastava et al. 2014, 5.1)",
            "ours": f"validation accuracy (diverged = 0): {ours}; largest usable lr: {usable[0.0]:g} without, "
                    f"{usable[3.0]:g} with max-norm",
            "criterion": "largest lr within 2 points of the best is larger with max-norm", "holds": holds,
            "detail": {"means": {str(k): v for k, v in means.items()}, "usable": usable}}


def early_stopping_l2() -> dict[str, Any]:
    """Goodfellow et al. (2016), section 7.8: for a linear model trained by gradient descent from small weights,
    stopping at step t behaves like L2 with lambda ~ 1/(eta t). A linear model on standardized diabetes, full-batch
    SGD (lr eta = 0.05, no momentum, so epoch t is step t); its weights w_t after t steps against the ridge
    solution with l2 = 1/(eta t) at t = 5 ... 500. tamenet refuses zero initial weights, so the start w_0 (the
    recipe's He-normal weights) enters the ridge formula: w_ridge minimizes 1/2n ||y - X w||^2 + lam/2 ||w - w_0||^2.
    Criterion (stated before the run): ||w_t - w_ridge|| / ||w_ridge - w_0|| <= 0.2 at every t, and smaller than
    the distance to the unregularized solution at the same t. Also reported: the same distance for the exact
    gradient-descent path w* + (I - eta H)^t (w_0 - w*) (what the approximation itself leaves), and how far our
    w_t is from that exact path (tamenet's arithmetic)."""
    from sklearn.datasets import load_diabetes

    from tamenet.models import build_model
    from tamenet.recipes import load_recipe

    X, y = load_diabetes(return_X_y=True)
    eta, steps = 0.05, [5, 10, 20, 50, 100, 200, 500]
    path: dict[int, np.ndarray] = {}

    def keep(record, trainer):
        if record.epoch in steps:  # record.epoch counts from 1: the weights after that many full-batch steps
            path[record.epoch] = [r.param.detach().double().numpy().reshape(-1).copy()
                                  for r in trainer.model.param_roles() if r.name == "output.weight"][0]

    recipe = _diabetes_linear({"optimizer": "sgd", "lr": eta, "epochs": max(steps), "schedule": {"kind": "constant"}},
                              {"l2": 0.0})
    result = _fit(recipe, X=X, y=y, callbacks=[keep])
    # the initial weights w_0: the model the recipe builds from its seed (fit builds it the same way)
    rebuilt = build_model(load_recipe(recipe).model, n_in=X.shape[1], n_out=1, seeds=[0], input_shape=None)
    w0 = [r.param.detach().double().numpy().reshape(-1) for r in rebuilt.param_roles() if r.name == "output.weight"][0]
    Xt, yt = result.data.X_train.double().numpy(), result.data.y_train.double().numpy()
    Xc, yc = Xt - Xt.mean(0), yt - yt.mean()
    n, f = Xc.shape
    H, g = Xc.T @ Xc / n, Xc.T @ yc / n
    ols = np.linalg.solve(H, g)
    rel, to_ols, exact_rel, ours_vs_exact = [], [], [], []
    for t in steps:
        w_t = path[t]
        lam = 1.0 / (eta * t)
        ridge = np.linalg.solve(H + lam * np.eye(f), g + lam * w0)
        exact = ols + np.linalg.matrix_power(np.eye(f) - eta * H, t) @ (w0 - ols)
        scale = np.linalg.norm(ridge - w0)
        rel.append(float(np.linalg.norm(w_t - ridge) / scale))
        to_ols.append(float(np.linalg.norm(w_t - ols) / scale))
        exact_rel.append(float(np.linalg.norm(exact - ridge) / scale))
        ours_vs_exact.append(float(np.linalg.norm(w_t - exact) / np.linalg.norm(exact - w0)))
    holds = max(rel) <= 0.2 and all(r < o for r, o in zip(rel, to_ols))
    return {"published": "early stopping at step t ~ L2 with lambda = 1/(eta t) (Goodfellow et al. 2016, 7.8)",
            "ours": ("||w_t - w_ridge|| / ||w_ridge - w_0|| at t = " + ", ".join(f"{t}: {r:.3f}" for t, r in zip(steps, rel))
                     + "; to the unregularized solution: " + ", ".join(f"{o:.2f}" for o in to_ols)
                     + "; the exact gradient-descent path's own distance to ridge: "
                     + ", ".join(f"{e:.3f}" for e in exact_rel)
                     + f"; our w_t against that exact path: at most {max(ours_vs_exact):.1e} (relative)"),
            "criterion": "<= 0.2 at every t and closer than the unregularized solution", "holds": holds,
            "detail": {"steps": steps, "relative": rel, "to_ols": to_ols, "exact_path_relative": exact_rel,
                       "ours_vs_exact_path": ours_vs_exact}}


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "mnist1d_ranking": mnist1d_ranking,
    "l1_lasso": l1_lasso,
    "input_noise_ridge": input_noise_ridge,
    "he_vs_xavier": he_vs_xavier,
    "residual_degradation": residual_degradation,
    "dropout_vs_size": dropout_vs_size,
    "maxnorm_lr": maxnorm_lr,
    "early_stopping_l2": early_stopping_l2,
}


NOTES = {
    "mnist1d_ranking": (
        "The CNN's 91.2 % lies inside the band as widened before the run but 0.8 points below the published "
        "92-94 %. Differences from the notebook: tamenet pads every kernel by k // 2 (2 for the first kernel of 5, "
        "where the notebook pads by 1; both give 20 -> 10 -> 5 positions and 125 flattened features), and its "
        "He-uniform initialization is not PyTorch's default Kaiming-uniform with a = sqrt(5)."),
    "dropout_vs_size": (
        "Tried once, as stated in the case: input dropout 0.2 / hidden 0.5 without max-norm, SGD lr 0.05 momentum "
        "0.9, batch 32, at most 150 epochs with early stopping (patience 30) on 300 fixed validation rows, 2 seeds. "
        "Dropout raised the test error at every size but digits' smallest (digits at 1,000 rows: 0.182 against "
        "0.040; mnist1d flat near 0.75 with dropout). A diagnostic run (digits, 500 rows, same settings) shows why: "
        "the dropout members' best validation epoch was 2-7 and their training accuracy 0.86-0.96 against 1.0 "
        "without dropout: at this learning rate, without max-norm, the dropout nets stop improving early "
        "(Srivastava et al. pair dropout with max-norm and train far longer). Not re-run with other settings: "
        "picking them after seeing this test-split result would tune the case to its answer. Next try: dropout "
        "with max-norm and the learning rate chosen on the validation rows."),
    "maxnorm_lr": (
        "Partly reproduced: max-norm c = 3 keeps the dropout nets from collapsing at the large learning rates "
        "(validation accuracy 0.449 against 0.102 at lr 0.1; 0.156 against diverged at lr 1) but not within 2 points "
        "of the best (0.963 at lr 0.01 in both arms), so the stated criterion fails. Tried once: 40 epochs, SGD "
        "momentum 0.95, dropout 0.2 / 0.5, 2 seeds, no learning-rate decay (Srivastava et al. decay it and train "
        "for far more steps)."),
    "early_stopping_l2": (
        "The bound 0.2 was stated before the run and fails for t <= 50 (0.24-0.27). The exact gradient-descent path "
        "w* + (I - eta H)^t (w_0 - w*) has the same distance to ridge, so this is the approximation's own error, "
        "not tamenet's: per eigen-direction of curvature h the shrink factors are (1 - eta h)^t against "
        "1 / (1 + eta h t), which differ by up to about 0.2 where eta h t is 1-2. tamenet's w_t equals the exact "
        "path to 1.8e-7 (relative), and the distance falls to 0.11 by t = 500 as the formula says it should."),
}
"""Analysis of the cases that did not reproduce in the recorded run (printed under the table when they fail)."""


def write_table(results: dict[str, dict]) -> str:
    """REPRODUCTION.md from the stored results (every case in CASES order)."""
    lines = ["# Reproduction suite", "",
             "Written by `bench/reproduce.py` (do not edit by hand). Each case runs with tamenet's own code; the",
             "criteria are stated in the script before any run. The machine was shared with other jobs (1 torch",
             "thread); times are wall-clock seconds.", "",
             "| case | published | ours | criterion | holds | time s |", "|---|---|---|---|---|---|"]
    for name in CASES:
        r = results.get(name)
        if r is None:
            lines.append(f"| {name} | - | not run yet | - | - | - |")
            continue
        cells = [name, r["published"], r["ours"], r["criterion"], "**yes**" if r["holds"] else "**NO**",
                 f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    failed = [n for n in CASES if n in results and not results[n]["holds"]]
    lines += ["", f"Run on {results.get('_machine', {}).get('platform', '?')}, torch "
                  f"{results.get('_machine', {}).get('torch', '?')}.", ""]
    if failed:
        lines += ["Cases that do not reproduce: " + ", ".join(failed) + " (each case's docstring in "
                  "`bench/reproduce.py` gives its set-up, `bench/reproduction.json` every number)."]
    else:
        lines += ["Every case run reproduces."]
    noted = [n for n in CASES if n in results and (n in failed or n in NOTES)]
    if noted:
        lines += ["", "Notes on the recorded run:", ""]
        lines += [f"* **{name}**: {NOTES.get(name, 'no analysis recorded yet.')}" for name in noted]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"cases to run (default all): {', '.join(CASES)}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--table-only", action="store_true", help="rewrite REPRODUCTION.md from the stored results")
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; valid: {', '.join(CASES)}")
    torch.set_num_threads(args.threads)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.table_only:
        TABLE.write_text(write_table(results))
        return 0
    for name in args.cases or list(CASES):
        started = time.perf_counter()
        try:
            row = CASES[name]()
        except Exception as err:  # a case that fails to run is reported, not hidden
            row = {"published": CASES[name].__doc__.splitlines()[0], "ours": f"failed: {type(err).__name__}: {err}",
                   "criterion": "-", "holds": False, "detail": {}}
        row["seconds"] = time.perf_counter() - started
        results[name] = row
        print(f"{name}: {'holds' if row['holds'] else 'DOES NOT HOLD'} ({row['seconds']:.0f} s)\n"
              f"  published: {row['published']}\n  ours: {row['ours']}", flush=True)
        results["_machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
        TABLE.write_text(write_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
