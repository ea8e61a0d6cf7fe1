"""Core benchmark: tamenet's training loop against a plain PyTorch loop, skorch and scikit-learn.

Every contender trains the same MLP 64-256-256-10 (ReLU, no dropout, no normalization) with SGD
(momentum 0.9, constant learning rate, batch 64) for the same number of epochs on scikit-learn's
``load_digits``, using tamenet's own split (test 0.2, validation 0.3 of the rest, standardized on
the training rows): the tensors come from ``tamenet.data.prepare(DataConfig())``, so every
contender sees identical numbers. All contenders run in this one process with the same torch
(and BLAS) thread count; each is warmed up once, then timed ``--repeats`` times in round-robin
order, and the median is reported.

    .venv/bin/python bench/bench_core.py                 # defaults: 30 epochs, 3 repeats, 1 thread
    .venv/bin/python bench/bench_core.py --repeats 5 --threads 0   # 0: torch's default thread count
    .venv/bin/python bench/bench_core.py --profile       # also profile one tamenet `fit`

Prints a table and writes the raw figures to ``bench/results/core.json``. The project's target is
tamenet's training loop within 1.1x of the plain loop; the script reports whether it is met and
asserts nothing.
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
from torch import nn

from tamenet import fit
from tamenet.config import DataConfig
from tamenet.data import prepare

from machine import machine_info  # bench/machine.py, beside this script

TARGET_RATIO = 1.1
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "core.json"
WIDTHS = (256, 256)


# --------------------------------------------------------------------------- shared pieces
def make_module(n_in: int, n_out: int) -> nn.Sequential:
    """The contenders' network: Linear-ReLU-Linear-ReLU-Linear, He-normal weights, zero biases (like tamenet)."""
    sizes = [n_in, *WIDTHS]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], n_out))
    net = nn.Sequential(*layers)
    for layer in net:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")  # std sqrt(2 / fan_in)
            nn.init.zeros_(layer.bias)
    return net


def tamenet_recipe(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """A recipe equivalent to the plain loop: no regularizer, no clipping, constant rate, no early stopping."""
    return {
        "name": "bench-core",
        "data": {"name": "digits", "val": 0.3, "test": 0.2, "seed": 0, "stratify": True, "standardize": True},
        "model": {
            "kind": "mlp",
            "widths": list(WIDTHS),
            "activation": "relu",
            "dropout": 0.0,
            "norm": "none",
            "init": "he_normal",
        },
        "penalty": {"l2": 0.0, "l1": 0.0},
        "train": {
            "optimizer": "sgd",
            "lr": args.lr,
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 0.0,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "schedule": {"kind": "constant", "warmup_epochs": 0},
            "clip": {"by": "none"},
            # patience null: never stop early; restore_best off: keep the last weights, like the others
            "early_stopping": {"monitor": "val_loss", "patience": None, "restore_best": False},
        },
        "track": {"tensorboard": False, "plots": False, "checkpoint": False},
        "seed": seed,
    }


def accuracy(pred: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    return float((np.asarray(pred) == np.asarray(y)).mean())


# --------------------------------------------------------------------------- contenders
# Each returns {"time_s": primary time, "test_accuracy": ..., **extra times}.


def run_plain(args: argparse.Namespace, data, seed: int) -> dict[str, float]:
    """A hand-written loop: nn.Sequential, torch.optim.SGD, randperm + index batching, validation each epoch.

    Times the same scope as tamenet's `train_time_s` (the epoch loop with its validation pass), and
    end to end (data preparation + model + loop + test evaluation) to set beside `fit`'s wall time.
    """
    t0 = time.perf_counter()
    d = prepare(DataConfig())  # same call as `fit` makes; identical tensors to `data`
    torch.manual_seed(seed)
    model = make_module(d.n_features, d.n_outputs)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    X, y, Xv, yv = d.X_train, d.y_train, d.X_val, d.y_val
    n, bs = len(X), args.batch_size
    history = []
    t1 = time.perf_counter()
    for _epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            xb, yb = X[idx], y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # running train loss / accuracy, as tamenet reports them
                loss_sum += loss.detach() * len(yb)
                correct += (out.argmax(1) == yb).sum()
        model.eval()
        with torch.no_grad():
            out_v = model(Xv)
            val_loss = loss_fn(out_v, yv).item()
            val_acc = (out_v.argmax(1) == yv).float().mean().item()
        history.append((loss_sum.item() / n, correct.item() / n, val_loss, val_acc))
    t2 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        test_acc = accuracy(model(d.X_test).argmax(1), d.y_test)
    t3 = time.perf_counter()
    if not (torch.equal(d.X_train, data.X_train) and torch.equal(d.X_test, data.X_test)):
        raise RuntimeError("prepare(DataConfig()) gave different tensors on a second call")
    return {"time_s": t2 - t1, "end_to_end_s": t3 - t0, "test_accuracy": test_acc}


def run_tamenet(args: argparse.Namespace, data, seed: int) -> dict[str, float]:
    """`tamenet.fit(recipe, out=None)`: loop time is `train_time_s`, the whole call `wall_time_s` (and timed outside)."""
    t0 = time.perf_counter()
    result = fit(tamenet_recipe(args, seed), out=None)
    outside = time.perf_counter() - t0
    s = result.summary
    if not (torch.equal(result.data.X_train, data.X_train) and torch.equal(result.data.X_test, data.X_test)):
        raise RuntimeError("tamenet's fit saw different tensors from the other contenders")
    if s["epochs_run"] != args.epochs:
        raise RuntimeError(f"tamenet ran {s['epochs_run']} epochs, expected {args.epochs}")
    return {
        "time_s": float(s["train_time_s"]),
        "fit_wall_s": float(s["wall_time_s"]),
        "call_s": outside,
        "test_accuracy": float(s["test"]["accuracy"]),
    }


def run_skorch(args: argparse.Namespace, data, seed: int) -> dict[str, float]:
    """skorch `NeuralNetClassifier.fit`, validating on tamenet's validation split each epoch (predefined split)."""
    from skorch import NeuralNetClassifier
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    Xtr, ytr = data.X_train.numpy(), data.y_train.numpy()
    Xv, yv = data.X_val.numpy(), data.y_val.numpy()
    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        make_module(data.n_features, data.n_outputs),  # initialized module: skorch keeps it as is
        criterion=nn.CrossEntropyLoss,  # the module outputs logits
        optimizer=torch.optim.SGD,
        optimizer__lr=args.lr,
        optimizer__momentum=0.9,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        iterator_train__shuffle=True,
        train_split=predefined_split(Dataset(Xv, yv)),  # no split of its own; same validation rows
        device="cpu",
        verbose=0,
    )
    t0 = time.perf_counter()
    net.fit(Xtr, ytr)
    t1 = time.perf_counter()
    return {"time_s": t1 - t0, "test_accuracy": accuracy(net.predict(data.X_test.numpy()), data.y_test)}


def run_sklearn(args: argparse.Namespace, data, seed: int) -> dict[str, float]:
    """scikit-learn `MLPClassifier.fit` (numpy, float32 inputs); it has no per-epoch validation pass without early stopping."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    clf = MLPClassifier(
        hidden_layer_sizes=WIDTHS,
        activation="relu",
        solver="sgd",
        momentum=0.9,
        nesterovs_momentum=False,
        learning_rate="constant",
        learning_rate_init=args.lr,
        batch_size=args.batch_size,
        max_iter=args.epochs,
        alpha=0.0,
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=10**9,
        shuffle=True,
        random_state=seed,
    )
    Xtr, ytr = data.X_train.numpy(), data.y_train.numpy()
    with warnings.catch_warnings(), threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(Xtr, ytr)
        t1 = time.perf_counter()
    if clf.n_iter_ != args.epochs:
        raise RuntimeError(f"MLPClassifier ran {clf.n_iter_} epochs, expected {args.epochs}")
    return {"time_s": t1 - t0, "test_accuracy": accuracy(clf.predict(data.X_test.numpy()), data.y_test)}


CONTENDERS: dict[str, Callable[..., dict[str, float]]] = {
    "plain": run_plain,
    "tamenet": run_tamenet,
    "skorch": run_skorch,
    "sklearn": run_sklearn,
}


# --------------------------------------------------------------------------- driver
def available(names: list[str]) -> list[str]:
    keep = []
    for name in names:
        if name == "skorch":
            try:
                import skorch  # noqa: F401
            except ImportError:
                print("skorch is not installed (pip install -e '.[bench]'); skipping it", file=sys.stderr)
                continue
        keep.append(name)
    return keep


def profile_tamenet(args: argparse.Namespace, top: int) -> str:
    """Two views of one tamenet `fit`: Python functions (cProfile) and torch operators (torch.profiler)."""
    import cProfile
    import io
    import pstats

    from torch.profiler import ProfilerActivity, profile

    prof = cProfile.Profile()
    prof.enable()
    fit(tamenet_recipe(args, 0), out=None)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as ops:
        fit(tamenet_recipe(args, 0), out=None)
    buf.write("torch operators of one fit, by self CPU time (shapes grouped):\n")
    buf.write(ops.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=top))
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (median reported)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (and BLAS) threads for every contender; 0 keeps torch's default (default: 1)")
    parser.add_argument("--only", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS),
                        help="run only these contenders (plain always runs: it is the reference)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one tamenet fit (cProfile, then torch.profiler operators)")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    names = available(["plain", *[n for n in args.only if n != "plain"]])

    data = prepare(DataConfig())  # the reference tensors every contender sees
    print(
        f"digits: train {len(data.y_train)}, val {len(data.y_val)}, test {len(data.y_test)}; "
        f"MLP {data.n_features}-{'-'.join(map(str, WIDTHS))}-{data.n_outputs}, SGD lr {args.lr} momentum 0.9, "
        f"batch {args.batch_size}, {args.epochs} epochs, {math.ceil(len(data.y_train) / args.batch_size)} steps/epoch"
    )
    print(f"torch {torch.__version__}, torch.get_num_threads() = {threads}, cpu_count = {os.cpu_count()}; "
          f"{args.repeats} repeats after 1 warm-up run each")

    raw: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    bench_start = time.perf_counter()
    for name in names:  # warm-up: imports, allocator, kernels' first use
        CONTENDERS[name](args, data, 0)
    for r in range(args.repeats):  # round-robin, so drift of the machine hits every contender alike
        for name in names:
            gc.collect()
            raw[name].append(CONTENDERS[name](args, data, r))
    bench_time = time.perf_counter() - bench_start

    def med(name: str, key: str = "time_s") -> float:
        return statistics.median(run[key] for run in raw[name])

    base = med("plain")
    rows: list[dict[str, Any]] = [
        {"contender": "plain PyTorch loop", "scope": "epoch loop (train + val)", "key": ("plain", "time_s")},
        {"contender": "plain PyTorch, end to end", "scope": "prepare + build + loop + test", "key": ("plain", "end_to_end_s")},
        {"contender": "tamenet fit: loop", "scope": "summary train_time_s", "key": ("tamenet", "time_s")},
        {"contender": "tamenet fit: whole call", "scope": "summary wall_time_s", "key": ("tamenet", "fit_wall_s")},
        {"contender": "skorch NeuralNetClassifier", "scope": ".fit() (train + val)", "key": ("skorch", "time_s")},
        {"contender": "sklearn MLPClassifier", "scope": ".fit() (train only)", "key": ("sklearn", "time_s")},
    ]
    rows = [row for row in rows if row["key"][0] in raw]
    for row in rows:
        name, key = row.pop("key")
        row["name"], row["time_key"] = name, key
        row["median_s"] = med(name, key)
        row["times_s"] = [run[key] for run in raw[name]]
        row["ratio_to_plain_loop"] = row["median_s"] / base
        row["test_accuracy_median"] = med(name, "test_accuracy")
        row["test_accuracy"] = [run["test_accuracy"] for run in raw[name]]

    header = (f"{'contender':<28} {'what is timed':<31} {'median s':>9} {'min-max s':>13} {'x plain':>8} "
              f"{'test acc':>9}")
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = f"{min(row['times_s']):.3f}-{max(row['times_s']):.3f}"
        print(f"{row['contender']:<28} {row['scope']:<31} {row['median_s']:>9.3f} {spread:>13} "
              f"{row['ratio_to_plain_loop']:>7.2f}x {row['test_accuracy_median']:>9.4f}")
    print()

    verdict: dict[str, Any] = {"target_ratio": TARGET_RATIO}
    if "tamenet" in raw:
        ratio = med("tamenet") / base
        e2e = med("tamenet", "fit_wall_s") / med("plain", "end_to_end_s")
        verdict.update({"tamenet_loop_ratio": ratio, "met": ratio <= TARGET_RATIO, "tamenet_fit_vs_plain_end_to_end": e2e})
        print(f"target: tamenet loop within {TARGET_RATIO}x of the plain loop -> {ratio:.2f}x: "
              f"{'MET' if ratio <= TARGET_RATIO else 'NOT MET'}")
        print(f"        (tamenet whole fit call vs plain end to end: {e2e:.2f}x)")
    print(f"benchmark time: {bench_time:.1f} s")

    result = {
        "command": [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(("sklearn", "skorch")),
        "settings": {
            "dataset": "digits",
            "split": {"test": 0.2, "val": 0.3, "seed": 0, "stratify": True, "standardize": "train rows"},
            "sizes": data.sizes(),
            "model": f"MLP {data.n_features}-{'-'.join(map(str, WIDTHS))}-{data.n_outputs} ReLU",
            "optimizer": {"name": "sgd", "lr": args.lr, "momentum": 0.9, "nesterov": False},
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "warmup_runs": 1,
            "threads": threads,
            "seeds": list(range(args.repeats)),
        },
        "rows": rows,
        "raw": raw,
        "verdict": verdict,
        "benchmark_time_s": bench_time,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")

    if args.profile:
        print("\nprofile of one tamenet fit (seed 0), cProfile first:")
        print(profile_tamenet(args, 30))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
