"""Search benchmark: a 10-fold cross-validated grid search as one population, against GridSearchCV.

The project's issue: on ``digits``, an MLP 64-256-256-10 (ReLU, no dropout, no normalization),
SGD with momentum 0.9 (not Nesterov), learning rate 0.1, batch 64, 30 epochs, and 10-fold
cross-validation over the L2 strength, 13 values log-spaced from 1e-6 to 1e6: 130 fits. Three
contenders do the same 130 fits on the same rows and the same folds, in this one process:

1. ``tamenet.search(recipe, grid={"penalty.l2": ...}, folds=10, refit=False, stop_share=0.0)``:
   all 130 (candidate, fold) pairs trained side by side as one population of 130 members;
2. scikit-learn ``GridSearchCV(Pipeline(StandardScaler, MLPClassifier(...)), cv=<tamenet's folds>,
   n_jobs=-1)``: 130 separate fits spread over worker processes;
3. the same 130 fits one after another through tamenet's single-model path (``run_cv`` with one
   candidate and one fold: a population of one), by default on a subset and extrapolated.

Successive halving does fewer fits, so it is timed against its own peer: ``tamenet.search(...,
halving=3)`` (rungs at epochs 1, 3 and 10, the folds' scored rows ranking the candidates, no
refits: the members that stay train on) beside scikit-learn's ``HalvingGridSearchCV`` with the
epochs as the resource (factor 3; 13, 5 and 2 candidates refitted for 3, 9 and 27 epochs).

Both libraries start the network the same way, Glorot-uniform weights (MLPClassifier's only
initialization; tamenet ``model.init: xavier_uniform``): with He-normal weights tamenet's
cross-validated accuracies were 0.3 points lower across three seeds (see bench/README.md).

    .venv/bin/python bench/bench_search.py                # defaults: 30 epochs, 3 repeats, torch's threads
    .venv/bin/python bench/bench_search.py --quick        # smoke run: 3 epochs, 1 repeat
    .venv/bin/python bench/bench_search.py --threads 1 --n-jobs 1 --profile

Prints a table and writes the raw figures to ``bench/results/search.json``. The project's targets:
tamenet's search at least 3x faster than GridSearchCV with an equal or better chosen CV accuracy,
and the population engine at least half the rate of a large matmul; the script reports whether
they are met and asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tamenet.allocator import keep_freed_memory
from tamenet.recipes import load_recipe
from tamenet.select import make_folds, make_pool, run_cv, search

from machine import machine_info  # bench/machine.py, beside this script

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "search.json"
WIDTHS = (256, 256)
FOLDS = 10
GRID = [float(v) for v in np.logspace(-6, 6, 13)]  # penalty.l2: 1e-6, 1e-5, ..., 1e6
TARGET_SPEEDUP = 3.0  # tamenet search vs GridSearchCV
TARGET_MATMUL_SHARE = 0.5  # population FLOP/s vs a large matmul's
SEQUENTIAL_BUDGET_S = 180.0  # --sequential auto: all 130 fits only if every repeat's share fits in this


# --------------------------------------------------------------------------- shared pieces
def tamenet_recipe(args: argparse.Namespace, *, epochs: int | None = None, l2: Any = 0.0) -> dict[str, Any]:
    """The issue's job: digits, MLP 64-256-256-10, SGD momentum 0.9, lr 0.1, batch 64; no early stopping."""
    return {
        "name": "bench-search",
        "data": {"name": "digits", "val": 0.3, "test": 0.2, "seed": 0, "stratify": True, "standardize": True},
        "model": {
            "kind": "mlp",
            "widths": list(WIDTHS),
            "activation": "relu",
            "dropout": 0.0,
            "norm": "none",
            "init": "xavier_uniform",  # MLPClassifier's Glorot-uniform weights (its biases are uniform too)
        },
        "penalty": {"l2": l2, "l2_form": "half", "l1": 0.0},  # lambda/2 * ||W||^2 on weights only
        "train": {
            "optimizer": "sgd",
            "lr": args.lr,
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 0.0,
            "batch_size": args.batch_size,
            "epochs": args.epochs if epochs is None else epochs,
            "schedule": {"kind": "constant", "warmup_epochs": 0},
            "clip": {"by": "none"},
            # patience null: never stop; restore_best off: last weights. No stopping set is carved
            # out, so every contender trains on the fold's full 90 % for every epoch.
            "early_stopping": {"monitor": "val_loss", "patience": None, "restore_best": False},
        },
        "track": {"tensorboard": False, "plots": False, "checkpoint": False},
        "seed": 0,
    }


def sklearn_alpha(l2: float, args: argparse.Namespace) -> float:
    """scikit-learn's alpha for tamenet's lambda.

    tamenet adds `lambda/2 * ||W||^2` to the batch's mean loss (gradient `lambda * W`, weights only).
    MLPClassifier adds `alpha/2 * ||W||^2 / n_batch` (gradient `alpha * W / n_batch`, coefs_ only,
    see `_backprop` / `_compute_loss_grad`), so alpha = lambda * batch_size is the same penalty on every
    full batch ("batch" map, the default); the epoch's last, short batch gets batch_size / n_last
    times more in scikit-learn. "same" passes lambda through as alpha (64 times weaker).
    """
    return l2 * args.batch_size if args.alpha_map == "batch" else l2


def flops_per_sample(n_in: int, n_out: int) -> dict[str, int]:
    """Matmul FLOPs of one sample: forward, and a training step (forward + backward)."""
    sizes = [n_in, *WIDTHS, n_out]
    forward = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    # backward: the weight gradient of every layer (as much as its forward) and the input gradient of
    # every layer but the first (the data needs none; autograd skips it)
    backward = forward + (forward - 2 * sizes[0] * sizes[1])
    return {"forward": forward, "train": forward + backward, "train_3x_forward": 3 * forward}


def matmul_rate(size: int, repeats: int = 7) -> dict[str, float]:
    """GFLOP/s of a size x size fp32 torch.mm (median of `repeats`, after one warm-up) at the current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"median_s": med, "gflops": 2 * size**3 / med / 1e9, "times_s": times}


class Context:
    """What every contender shares: the pool, the folds, the grid; and the population's latest scores."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        recipe = load_recipe(tamenet_recipe(args))
        self.pool = make_pool(recipe)
        self.folds = make_folds("kfold", self.pool.y, folds=FOLDS, seed=0)
        # the call `search(..., scheme="kfold")` makes (the kfold scheme does not stratify)
        theirs = make_folds("kfold", self.pool.y, folds=FOLDS, seed=recipe.data.seed, val=recipe.data.val,
                            stratify=recipe.data.stratify)
        if len(theirs) != FOLDS or any(
            not (np.array_equal(a, c) and np.array_equal(b, d)) for (a, b), (c, d) in zip(self.folds, theirs)
        ):
            raise RuntimeError("make_folds('kfold', ...) differs from the folds tamenet's search draws")
        self.population_folds: list[list[float]] | None = None  # [candidate][fold] cv accuracy


# --------------------------------------------------------------------------- contenders
# Each returns {"time_s": primary time, "best_l2": ..., "best_cv_accuracy": ..., **details}.


def run_tamenet(args: argparse.Namespace, ctx: Context, r: int, *, epochs: int | None = None,
                halving: int | None = None, side_by_side: int | None = None) -> dict[str, Any]:
    """`tamenet.search(...)`: 130 members in one population. Primary time: the whole call, timed outside.

    With `halving` (ETA), successive halving drops the worse candidates at rungs: fewer member-epochs.
    `side_by_side` (default: `--side-by-side`, else one part per torch thread): the parts trained at once."""
    trained: dict[int, int] = {}  # members that trained in each epoch, over the parts (callbacks run before any leave)

    def count(record, trainer) -> None:
        trained[record.epoch] = trained.get(record.epoch, 0) + len(record.rows)

    faults = minor_faults()
    t0 = time.perf_counter()
    result = search(
        tamenet_recipe(args, epochs=epochs), grid={"penalty.l2": GRID}, folds=FOLDS, refit=False, stop_share=0.0,
        callbacks=[count], halving=halving, side_by_side=side_by_side if side_by_side else args.side_by_side,
    )
    call = time.perf_counter() - t0
    faults = minor_faults() - faults if faults is not None else None
    sizes = result["sizes"]
    expected_fit = len(ctx.pool.y) - len(ctx.pool.y) // FOLDS
    if sizes["fit"] != expected_fit or sizes["stop"] != 0 or sizes["scored"] != [len(ctx.pool.y) // FOLDS]:
        raise RuntimeError(f"tamenet's search trained/scored on unexpected row counts: {sizes}")
    if result["members"] != len(GRID) * FOLDS or result["populations"] != 1:
        raise RuntimeError(f"expected one population of {len(GRID) * FOLDS} members, got {result['populations']} "
                           f"population(s) of {result['members']} members")
    rows = result["candidates"]
    best = result["best"]
    if halving is None:
        ctx.population_folds = [row["cv_accuracy_folds"] for row in rows]
    return {
        "time_s": call,
        "loop_s": float(result["cv_train_time_s"]),
        "wall_time_s": float(result["wall_time_s"]),
        "minor_page_faults": faults,  # fresh pages the allocator had to map: each costs a kernel trap
        "members_per_epoch": [trained[e] for e in sorted(trained)],
        "member_epochs": sum(trained.values()),
        "side_by_side": result["memory"]["side_by_side"],
        "best_l2": float(best["penalty.l2"]),
        "best_cv_accuracy": float(best["cv_accuracy_mean"]),
        "cv_accuracy": [float(row["cv_accuracy_mean"]) for row in rows],
        "diverged_folds": [len(row["diverged_folds"]) for row in rows],
        "halving": result["halving"][0] if halving is not None else None,  # rungs, who stayed, compute saved
    }


def gridsearch(args: argparse.Namespace, ctx: Context, *, max_iter: int | None = None):
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(
        StandardScaler(),  # fitted on each fold's training rows, as tamenet scales per fold
        MLPClassifier(
            hidden_layer_sizes=WIDTHS,
            activation="relu",
            solver="sgd",
            momentum=0.9,
            nesterovs_momentum=False,
            learning_rate="constant",
            learning_rate_init=args.lr,
            batch_size=args.batch_size,
            max_iter=args.epochs if max_iter is None else max_iter,
            early_stopping=False,
            tol=0.0,
            n_iter_no_change=10**9,
            shuffle=True,
            random_state=0,
        ),
    )
    alphas = [sklearn_alpha(v, args) for v in GRID]
    return GridSearchCV(
        pipe, param_grid={"mlpclassifier__alpha": alphas}, cv=ctx.folds, n_jobs=args.n_jobs, refit=False,
        error_score=np.nan,
    ), alphas


def run_sklearn(args: argparse.Namespace, ctx: Context, r: int, *, max_iter: int | None = None) -> dict[str, Any]:
    """`GridSearchCV(...).fit(pool)` with tamenet's folds (float32 rows: the scaler and the MLP keep float32)."""
    from sklearn.exceptions import ConvergenceWarning

    gs, alphas = gridsearch(args, ctx, max_iter=max_iter)
    with warnings.catch_warnings():  # the filter reaches joblib's workers (scikit-learn passes it on)
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the diverging candidates
        warnings.filterwarnings("ignore", message="One or more of the (test|train) scores are non-finite")
        t0 = time.perf_counter()
        gs.fit(ctx.pool.X, ctx.pool.y)
        t1 = time.perf_counter()
    cv = gs.cv_results_
    best = int(np.argmin(cv["rank_test_score"]))  # ties: the first, as tamenet
    per_fold = np.array([cv[f"split{k}_test_score"] for k in range(FOLDS)])  # [fold, candidate]
    return {
        "time_s": t1 - t0,
        "best_alpha": float(alphas[best]),
        "best_l2": float(GRID[best]),  # the grid point, in tamenet's lambda
        "best_cv_accuracy": float(cv["mean_test_score"][best]),
        "cv_accuracy": [float(v) for v in cv["mean_test_score"]],
        "mean_fit_time_s": float(np.nanmean(cv["mean_fit_time"])),
        "mean_fit_time_per_candidate_s": [float(v) for v in cv["mean_fit_time"]],
        "nan_folds": [int(v) for v in np.isnan(per_fold).sum(0)],
    }


def run_sklearn_halving(args: argparse.Namespace, ctx: Context, r: int) -> dict[str, Any]:
    """`HalvingGridSearchCV` over the same alphas, epochs (max_iter) as the resource, factor 3, up to 30 epochs."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (makes the class importable)
    from sklearn.model_selection import HalvingGridSearchCV

    grid, alphas = gridsearch(args, ctx)
    search_ = HalvingGridSearchCV(
        grid.estimator, {"mlpclassifier__alpha": alphas}, factor=3, resource="mlpclassifier__max_iter",
        max_resources=args.epochs, min_resources="exhaust", cv=ctx.folds, n_jobs=args.n_jobs, refit=False,
        error_score=np.nan, random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="One or more of the (test|train) scores are non-finite")
        t0 = time.perf_counter()
        search_.fit(ctx.pool.X, ctx.pool.y)
        t1 = time.perf_counter()
    alpha = float(search_.best_params_["mlpclassifier__alpha"])
    return {
        "time_s": t1 - t0,
        "best_alpha": alpha,
        "best_l2": float(GRID[alphas.index(alpha)]),
        "best_cv_accuracy": float(search_.best_score_),
        "epochs_per_iteration": [int(v) for v in search_.n_resources_],
        "candidates_per_iteration": [int(v) for v in search_.n_candidates_],
    }


def sequential_fit(args: argparse.Namespace, ctx: Context, l2: float, fold: int, *, epochs: int | None = None):
    return run_cv(load_recipe(tamenet_recipe(args, epochs=epochs, l2=l2)), ctx.pool, [ctx.folds[fold]],
                  stop_share=0.0)


def sequential_folds(args: argparse.Namespace, r: int) -> list[int]:
    return list(range(FOLDS)) if args.sequential == "full" else [r % FOLDS]


def run_sequential(args: argparse.Namespace, ctx: Context, r: int) -> dict[str, Any]:
    """The 130 fits one by one as populations of one (`run_cv`, one candidate, one fold): all, or every
    candidate on fold r (13 fits) with the time extrapolated x10."""
    folds = sequential_folds(args, r)
    acc = np.full((len(GRID), FOLDS), np.nan)
    loop = 0.0
    stopped_early = 0
    t0 = time.perf_counter()
    for c, l2 in enumerate(GRID):
        for f in folds:
            run = sequential_fit(args, ctx, l2, f)
            acc[c, f] = run.scores["scored"]["accuracy"][0]
            loop += run.trainer.state.wall_time
            stopped_early += run.trainer.state.epoch < args.epochs  # a diverged population of one stops
    measured = time.perf_counter() - t0
    scale = FOLDS / len(folds)
    out: dict[str, Any] = {
        "time_s": measured * scale,
        "measured_s": measured,
        "loop_s": loop * scale,
        "fits_measured": len(GRID) * len(folds),
        "folds_measured": folds,
        "extrapolated_x": scale,
        "fits_stopped_early": stopped_early,
    }
    # a diverged fit scores NaN (a failed fit, as in the population and in GridSearchCV) and never wins
    if len(folds) == FOLDS:
        means = acc.mean(1)
        best = int(np.argmax(np.where(np.isfinite(means), means, -np.inf)))
        out.update(best_l2=GRID[best], best_cv_accuracy=float(means[best]), cv_accuracy=means.tolist())
    else:  # the chosen lambda needs all folds: report the measured fold(s) only
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a candidate whose measured fit diverged: all NaN
            means = np.nanmean(acc, 1)
        best = int(np.argmax(np.where(np.isfinite(means), means, -np.inf)))
        out.update(best_l2=GRID[best], best_cv_accuracy=float(means[best]), cv_accuracy=means.tolist(),
                   partial=f"fold(s) {folds} only")
    if ctx.population_folds is not None:  # the same models as the population's members?
        pop = np.array(ctx.population_folds)
        a, b = pop[:, folds], acc[:, folds]
        diff = np.abs(a - b)
        out["max_abs_diff_vs_population"] = float(np.nanmax(diff))
        out["fits_differing_from_population"] = int(((diff > 0) | (np.isnan(a) != np.isnan(b))).sum())
    return out


def run_halving(args: argparse.Namespace, ctx: Context, r: int) -> dict[str, Any]:
    """The same search with successive halving (ETA 3): the grid's worse candidates stop at rungs."""
    return run_tamenet(args, ctx, r, halving=3)


def run_one_population(args: argparse.Namespace, ctx: Context, r: int) -> dict[str, Any]:
    """`tamenet.search(..., side_by_side=1)`: the 130 members as one population on torch's threads."""
    return run_tamenet(args, ctx, r, side_by_side=1)


CONTENDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "tamenet": run_tamenet,
    "one_population": run_one_population,
    "halving": run_halving,
    "sklearn": run_sklearn,
    "sklearn_halving": run_sklearn_halving,
    "sequential": run_sequential,
}


# --------------------------------------------------------------------------- profile
GEMM_OPS = {"bmm", "baddbmm", "mm", "addmm", "matmul"}
UPDATE_OPS = {"addcmul_", "addcmul", "mul_", "add_", "sub_", "copy_", "zero_", "fill_", "clone", "lerp_", "sign"}
FORWARD_OPS = {"relu", "clamp_min", "threshold_backward", "_log_softmax", "_log_softmax_backward_data",
               "nll_loss_forward", "nll_loss_backward", "sum", "mean", "argmax", "eq", "mul", "div", "add", "sub",
               "where", "pow", "sqrt", "cross_entropy_loss", "log_softmax", "nll_loss", "nll_loss_nd"}
INDEX_OPS = {"index", "gather", "scatter", "index_select", "randperm"}


def op_category(name: str) -> str:
    """Coarse kind of a profiler event (an `aten::` operator; anything else is bookkeeping)."""
    op = name.removeprefix("aten::")
    if not name.startswith("aten::"):
        return "other (autograd engine, Python-side bookkeeping)"
    if op in GEMM_OPS:
        return "GEMM (bmm/baddbmm)"
    if op in UPDATE_OPS:
        return "element-wise in place (penalty, momentum, step, copies, fills)"
    if op in FORWARD_OPS:
        return "element-wise out of place (ReLU, loss, bias gradients, metrics)"
    if op in INDEX_OPS:
        return "batch gather / indexing"
    return "allocation, views, other aten"


PROFILE_GRID = [float(v) for v in np.logspace(-6, 1, 13)]
"""13 strengths none of which diverges: the profiled epoch still has all 130 members (same shapes, same work)."""


def profile_population(args: argparse.Namespace) -> dict[str, Any]:
    """Profile one steady-state epoch (the second) of a 130-member population, operator by operator.

    Members that diverge leave the population after their epoch, so the benchmark's own grid would
    profile 80 members; PROFILE_GRID keeps all 130 with the same shapes and the same work per step.
    """
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU])
    marks: dict[str, Any] = {}

    def callback(record, trainer) -> None:  # runs after each epoch, before any member leaves
        if record.epoch == 1:
            prof.start()
            marks["start"] = time.perf_counter()
        elif record.epoch == 2:
            marks["stop"] = time.perf_counter()
            marks["members"] = len(record.rows)
            prof.stop()

    search(tamenet_recipe(args, epochs=2), grid={"penalty.l2": PROFILE_GRID}, folds=FOLDS, refit=False,
           stop_share=0.0, callbacks=[callback])
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    cats: dict[str, float] = {}
    for e in events:
        cats[op_category(e.key)] = cats.get(op_category(e.key), 0.0) + e.self_cpu_time_total
    table = events.table(sort_by="self_cpu_time_total", row_limit=25)
    return {
        "epoch_wall_s": marks["stop"] - marks["start"],
        "members": marks["members"],
        "grid_l2": PROFILE_GRID,
        "profiled_self_cpu_s": total / 1e6,
        "categories_s": {k: v / 1e6 for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
        "table": table,
    }


# --------------------------------------------------------------------------- driver
def minor_faults() -> int | None:
    """This process's minor page faults so far (None where `resource` is missing)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (median reported)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--allocator", choices=["keep", "default"], default="keep",
                        help="keep: glibc keeps freed blocks for reuse, as the tamenet command sets it "
                             "(tamenet.allocator); default: glibc's own thresholds")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for tamenet and the matmul reference; 0 keeps torch's default "
                             "(the machine's cores)")
    parser.add_argument("--side-by-side", type=int, default=None, metavar="N",
                        help="tamenet's parts side by side (default: one per torch thread); the one_population "
                             "contender always trains one")
    parser.add_argument("--n-jobs", type=int, default=-1, help="GridSearchCV's n_jobs (default -1: every core)")
    parser.add_argument("--alpha-map", choices=["batch", "same"], default="batch",
                        help="scikit-learn's alpha = lambda * batch size (the same penalty per full batch, "
                             "default) or alpha = lambda")
    parser.add_argument("--sequential", choices=["auto", "subset", "full"], default="auto",
                        help="single-model path: all 130 fits per repeat ('full'), or the 13 candidates on "
                             "one fold per repeat, x10 ('subset'); 'auto' picks full only if the estimate "
                             f"for all repeats is under {SEQUENTIAL_BUDGET_S:.0f} s")
    parser.add_argument("--only", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS),
                        help="run only these contenders")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 epochs, 1 repeat")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one epoch of the 130-member population (torch.profiler)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats = 3, 1

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.allocator == "keep" else False  # what the tamenet command does
    threads = torch.get_num_threads()
    load_before = loadavg()
    bench_start = time.perf_counter()
    ctx = Context(args)
    n, k = len(ctx.pool.y), FOLDS
    n_fit, n_scored = n - n // k, n // k
    steps = math.ceil(n_fit / args.batch_size)
    members = len(GRID) * FOLDS
    fps = flops_per_sample(ctx.pool.X.shape[1], int(ctx.pool.y.max()) + 1)
    full_flops = fps["train"] * n_fit * args.epochs * members  # all 130 fits, every epoch; no validation passes

    print(f"digits: pool {n} rows ({ctx.pool.test_rows} test rows set aside), {k}-fold: train {n_fit} / "
          f"score {n_scored} per fold; MLP 64-{'-'.join(map(str, WIDTHS))}-10 ReLU, SGD lr {args.lr} momentum 0.9, "
          f"batch {args.batch_size} ({steps} steps/epoch), {args.epochs} epochs")
    print(f"grid: penalty.l2 = 1e-6 ... 1e6 (13 values); scikit-learn alpha = "
          f"{'lambda x ' + str(args.batch_size) if args.alpha_map == 'batch' else 'lambda'}; "
          f"{members} fits per contender")
    print(f"torch {torch.__version__}, torch threads {threads}, GridSearchCV n_jobs {args.n_jobs}, "
          f"cpu_count {os.cpu_count()}, allocator {args.allocator} (set: {kept}), load average {load_before}; "
          f"{args.repeats} repeats after a warm-up")
    if load_before and load_before[0] > 0.5:
        print(f"note: the machine was already busy (1-min load {load_before[0]}); timings share the CPU")

    names = [c for c in CONTENDERS if c in args.only]
    # warm-up, untimed: imports, allocator, kernels; a 1-epoch search and a 1-iteration GridSearchCV
    # (which also starts joblib's worker processes, reused afterwards); one full single-model fit,
    # which also estimates the sequential path's cost
    warm_start = time.perf_counter()
    if "tamenet" in names:
        run_tamenet(args, ctx, 0, epochs=1)
    if "sklearn" in names:
        run_sklearn(args, ctx, 0, max_iter=1)
    matmul_rate(2048, repeats=1)
    if "sequential" in names:
        t0 = time.perf_counter()
        sequential_fit(args, ctx, GRID[0], 0)
        one_fit = time.perf_counter() - t0
        estimate = one_fit * members
        if args.sequential == "auto":
            args.sequential = "full" if estimate * args.repeats <= SEQUENTIAL_BUDGET_S else "subset"
        print(f"single-model path: one fit took {one_fit:.2f} s, all {members} ~ {estimate:.0f} s per repeat -> "
              f"{'all 130 fits per repeat' if args.sequential == 'full' else '13 fits per repeat (every candidate on one fold, fold = repeat index), time x10'}")
    warm_time = time.perf_counter() - warm_start

    raw: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    matmul: list[dict[str, float]] = []
    for r in range(args.repeats):  # round-robin, so drift of the machine hits every contender alike
        for name in names:
            gc.collect()
            raw[name].append(CONTENDERS[name](args, ctx, r))
            raw[name][-1]["load_average_after"] = loadavg()  # others' work on the machine shows here
            print(f"  repeat {r + 1}/{args.repeats} {name}: {raw[name][-1]['time_s']:.1f} s", flush=True)
        gc.collect()
        matmul.append(matmul_rate(2048))
    bench_time = time.perf_counter() - bench_start
    load_after = loadavg()

    def med(name: str, key: str = "time_s") -> float:
        return statistics.median(run[key] for run in raw[name])

    mm_gflops = statistics.median(m["gflops"] for m in matmul)
    rows: list[dict[str, Any]] = []
    spec = [
        ("tamenet", "time_s", "tamenet search (M=130, parts side by side)", "search() call"),
        ("tamenet", "loop_s", "  of which the training loop", "cv_train_time_s"),
        ("one_population", "time_s", "tamenet search, one population", "search() call"),
        ("one_population", "loop_s", "  of which the training loop", "cv_train_time_s"),
        ("halving", "time_s", "tamenet search --halving 3", "search() call"),
        ("sklearn", "time_s", f"GridSearchCV, n_jobs={args.n_jobs}", ".fit()"),
        ("sklearn_halving", "time_s", f"HalvingGridSearchCV, n_jobs={args.n_jobs}", ".fit()"),
        ("sequential", "time_s", "tamenet, 130 single fits in a row",
         "run_cv x130" if args.sequential == "full" else "run_cv x13, x10"),
    ]
    for name, key, label, scope in spec:
        if name not in raw:
            continue
        row = {"contender": label, "name": name, "scope": scope, "time_key": key, "median_s": med(name, key),
               "times_s": [run[key] for run in raw[name]]}
        last = raw[name][-1]
        row["best_l2"] = last["best_l2"] if key == "time_s" else None
        row["best_cv_accuracy"] = last["best_cv_accuracy"] if key == "time_s" else None
        row["best_cv_accuracy_median"] = med(name, "best_cv_accuracy") if key == "time_s" else None
        rows.append(row)
    base = med("tamenet") if "tamenet" in raw else None
    for row in rows:
        row["ratio_to_tamenet_search"] = row["median_s"] / base if base else None

    header = (f"{'contender':<37} {'what is timed':<18} {'median s':>9} {'min-max s':>15} {'x tamenet':>9} "
              f"{'chosen l2':>9} {'CV acc':>7}")
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = f"{min(row['times_s']):.1f}-{max(row['times_s']):.1f}"
        ratio = f"{row['ratio_to_tamenet_search']:.2f}x" if row["ratio_to_tamenet_search"] else "-"
        l2 = f"{row['best_l2']:.0e}" if row["best_l2"] is not None else ""
        acc = f"{row['best_cv_accuracy_median']:.4f}" if row["best_cv_accuracy_median"] is not None else ""
        print(f"{row['contender']:<37} {row['scope']:<18} {row['median_s']:>9.2f} {spread:>15} {ratio:>9} "
              f"{l2:>9} {acc:>7}")
    print()

    verdict: dict[str, Any] = {"target_speedup": TARGET_SPEEDUP, "target_matmul_share": TARGET_MATMUL_SHARE}
    if "sklearn" in raw:
        last = raw["sklearn"][-1]
        print(f"GridSearchCV chose alpha {last['best_alpha']:.3g} (= lambda {last['best_l2']:.0e}); "
              f"{sum(last['nan_folds'])} of {members} fits ended with non-finite weights (score NaN, ranked last)")
    if "sequential" in raw:
        last = raw["sequential"][-1]
        note = f" ({last['partial']}: the chosen lambda is not a 10-fold choice)" if "partial" in last else ""
        print(f"single-model path: {last['fits_measured']} fits measured per repeat, time x{last['extrapolated_x']:g}"
              f"{note}; {last['fits_stopped_early']} of them stopped early (diverged: a population of one stops)")
        if "max_abs_diff_vs_population" in last:
            print(f"  same models as the population's members? {last['fits_differing_from_population']} of "
                  f"{last['fits_measured']} fold accuracies differ (max |diff| {last['max_abs_diff_vs_population']:.4f})")
    if "tamenet" in raw:
        loop = med("tamenet", "loop_s")
        member_epochs = raw["tamenet"][-1]["member_epochs"]
        per_epoch = raw["tamenet"][-1]["members_per_epoch"]
        train_flops = fps["train"] * n_fit * member_epochs  # what the population actually trained
        gflops = train_flops / loop / 1e9
        share = gflops / mm_gflops
        verdict.update(population_gflops=gflops, matmul_gflops=mm_gflops, matmul_share=share,
                       matmul_met=share >= TARGET_MATMUL_SHARE)
        changes = [f"{m} from epoch {e + 1}" for e, m in enumerate(per_epoch) if e == 0 or m != per_epoch[e - 1]]
        print(f"population engine: {member_epochs} member-epochs trained ({', '.join(changes)}; all 130 fits "
              f"would be {members * args.epochs}) x {n_fit} rows x {fps['train'] / 1e3:.0f} kFLOP = "
              f"{train_flops / 1e12:.2f} TFLOP of training matmuls, no validation passes, in {loop:.2f} s = "
              f"{gflops:.1f} GFLOP/s; 2048x2048 fp32 torch.mm at {threads} thread(s): {mm_gflops:.1f} GFLOP/s")
        print(f"target: population at least {TARGET_MATMUL_SHARE:.0%} of the matmul rate -> {share:.1%}: "
              f"{'MET' if share >= TARGET_MATMUL_SHARE else 'NOT MET'} "
              f"({raw['tamenet'][-1]['side_by_side']} part(s) side by side)")
        if "one_population" in raw:  # the same work as one population on torch's threads, measured alongside
            one = med("one_population", "loop_s")
            verdict.update(one_population_matmul_share=train_flops / one / 1e9 / mm_gflops, side_by_side_speedup=one / loop)
            print(f"  one population on {threads} thread(s): {train_flops / one / 1e9:.1f} GFLOP/s = "
                  f"{train_flops / one / 1e9 / mm_gflops:.1%} of the matmul rate; side by side {one / loop:.2f}x faster")
        floor_full, floor_done = full_flops / (mm_gflops * 1e9), train_flops / (mm_gflops * 1e9)
        verdict.update(seconds_at_matmul_rate_all_fits=floor_full, seconds_at_matmul_rate_trained=floor_done,
                       member_epochs=member_epochs, full_flops=full_flops, trained_flops=train_flops)
        print(f"  at the matmul rate, all 130 fits' {full_flops / 1e12:.2f} TFLOP would take {floor_full:.1f} s "
              f"(a floor for any contender that trains them all), the population's {floor_done:.1f} s; "
              f"with the 3x-forward count the rate reads {fps['train_3x_forward'] / fps['train'] * gflops:.1f} GFLOP/s")
        diverged = raw["tamenet"][-1]["diverged_folds"]
        print(f"  {sum(diverged)} of {members} members diverged (lambda >= 100 with lr 0.1)")
        faults = [run["minor_page_faults"] for run in raw["tamenet"]]
        if None not in faults:
            total_steps = steps * args.epochs
            print(f"  minor page faults during the search: {', '.join(f'{f / total_steps:.0f}' for f in faults)} "
                  f"per step (fresh pages for the step's large tensors)")
    for name, label, key in (("tamenet", "tamenet search (all 130 fits)", ""), ("halving", "tamenet search --halving 3",
                                                                              "halving_")):
        if name not in raw or "sklearn" not in raw:
            continue
        speedup = med("sklearn") / med(name)
        acc_t, acc_s = med(name, "best_cv_accuracy"), med("sklearn", "best_cv_accuracy")
        met = speedup >= TARGET_SPEEDUP and acc_t >= acc_s
        verdict.update({f"{key}speedup_vs_gridsearch": speedup, f"{key}tamenet_cv_accuracy": acc_t,
                        "gridsearch_cv_accuracy": acc_s, f"{key}speed_met": met})
        print(f"target: {label} at least {TARGET_SPEEDUP:g}x faster than GridSearchCV with an equal or "
              f"better chosen CV accuracy -> {speedup:.2f}x, accuracy {acc_t:.4f} vs {acc_s:.4f}: "
              f"{'MET' if met else 'NOT MET'}")
    if "halving" in raw and "sklearn_halving" in raw:
        speedup = med("sklearn_halving") / med("halving")
        acc_t, acc_s = med("halving", "best_cv_accuracy"), med("sklearn_halving", "best_cv_accuracy")
        last = raw["sklearn_halving"][-1]
        verdict.update(halving_speedup_vs_halving_gridsearch=speedup, halving_gridsearch_cv_accuracy=acc_s)
        print(f"successive halving against its peer: tamenet --halving 3 {speedup:.2f}x faster than "
              f"HalvingGridSearchCV ({last['candidates_per_iteration']} candidates for "
              f"{last['epochs_per_iteration']} epochs), chosen CV accuracy {acc_t:.4f} vs {acc_s:.4f}")
    if "tamenet" in raw and "sequential" in raw:
        speedup = med("sequential") / med("tamenet")
        verdict["speedup_vs_sequential"] = speedup
        print(f"tamenet search vs the same fits one after another: {speedup:.2f}x")
    print(f"benchmark time: {bench_time:.1f} s (warm-up {warm_time:.1f} s); load average before {load_before}, "
          f"after {load_after}")

    result = {
        "command": [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(("sklearn",)),
        "load_average": {"before": load_before, "after": load_after},
        "settings": {
            "dataset": "digits",
            "pool": {"rows": n, "test_set_aside": ctx.pool.test_rows, "split_seed": 0},
            "cv": {"scheme": "kfold (tamenet's balanced k-fold)", "folds": k, "seed": 0, "train_rows": n_fit,
                   "scored_rows": n_scored, "standardize": "per fold, on its training rows"},
            "grid_l2": GRID,
            "grid_sklearn_alpha": [sklearn_alpha(v, args) for v in GRID],
            "alpha_map": args.alpha_map,
            "model": f"MLP 64-{'-'.join(map(str, WIDTHS))}-10 ReLU",
            "optimizer": {"name": "sgd", "lr": args.lr, "momentum": 0.9, "nesterov": False},
            "batch_size": args.batch_size,
            "steps_per_epoch": steps,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "torch_threads": threads,
            "n_jobs": args.n_jobs,
            "sequential": args.sequential,
            "flops_per_sample": fps,
            "full_flops": full_flops,
        },
        "rows": rows,
        "raw": raw,
        "matmul": matmul,
        "verdict": verdict,
        "benchmark_time_s": bench_time,
    }

    if args.profile:
        print("\nprofile: epoch 2 of a population of 130 (penalty.l2 from 1e-6 to 10, none diverges), "
              "torch.profiler, operators' self time by group")
        prof = profile_population(args)
        total = prof["profiled_self_cpu_s"]
        print(f"epoch wall time {prof['epoch_wall_s']:.2f} s ({steps} steps, {prof['members']} members, under the "
              f"profiler); operators' self time {total:.2f} s (on the calling thread)")
        for cat, secs in prof["categories_s"].items():
            print(f"  {secs:8.3f} s {secs / total:6.1%}  {cat}")
        print(prof["table"])
        result["profile"] = {k: v for k, v in prof.items() if k != "table"}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
