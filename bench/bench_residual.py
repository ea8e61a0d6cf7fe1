"""Degradation study (F4): does a deep plain MLP train worse than a shallow one, and a residual one?

He et al. (CVPR 2016) observed that a deeper plain network reaches a *higher training error* than a
shallower one - not overfitting, an optimization problem - and that identity shortcuts remove it.
This script trains, on ``mnist1d`` with the same optimizer and budget:

* ``plain 4``: 4 hidden layers of width ``--width`` (default 128);
* ``plain 30``: 30 hidden layers of that width;
* ``residual 30``: the same 30 layers with ``model.residual: true`` (tamenet's residual MLP: a
  hidden layer whose input and output widths agree adds its input, ``h_l = h_{l-1} + phi(W_l h_{l-1})``
  with phi the (normalization and) ReLU; the first layer 40 -> 128 has no shortcut);

each with ``--seeds`` seeds as ONE population, He-normal weights, zero biases, no dropout, SGD with
momentum, constant learning rate, no early stopping (the last weights are scored). It repeats
this for every normalization in ``--norms`` (default: ``none``, then ``batch``), placed before or
after the ReLU by ``--position`` (default before).

Printed: the epoch-mean training loss at a few epochs (with the seeds' mean), then, after the last
epoch, the training loss and accuracy and the validation accuracy of the final weights (evaluated
without dropout, BatchNorm with running statistics), mean and min-max over seeds.

What the study shows (the measured tables are in bench/README.md): the degradation problem, on
the training loss - without normalization, and with BatchNorm before the ReLU, the plain 30-layer
net ends far above the 4-layer one (0.88 against 0.13; 1.35 against 0.055). The residual net as
tamenet builds it does not remove the gap in these settings: without normalization each branch adds
a non-negative ReLU output to the running sum, the activations about triple in second moment per
layer, the outputs start around 1e7 and the first steps diverge (members frozen, shown as nan);
with BatchNorm before the ReLU it trains unsteadily and ends near the plain 30-layer net. With
BatchNorm *after* the ReLU (``--position after``: every branch ends zero-mean, unit-variance, as in
pre-activation ResNets) the effect of He et al. appears: the plain 30-layer net degrades (training
loss 1.55 against 0.018 for 4 layers) while the residual 30-layer net trains best (0.0023).

    .venv/bin/python bench/bench_residual.py                                # no norm, then BatchNorm before the ReLU
    .venv/bin/python bench/bench_residual.py --norms batch --position after # BatchNorm after the ReLU

Writes the table and the per-epoch curves to ``bench/results/residual.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import tamenet
from tamenet import fit
from tamenet.track import format_table

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "residual.json"
MODELS = (("plain", 4, False), ("plain", 30, False), ("residual", 30, True))


def recipe_for(args: argparse.Namespace, depth: int, residual: bool, norm: str) -> dict:
    return {
        "name": "bench-residual",
        "data": {"name": "mnist1d"},
        "model": {"widths": [args.width] * depth, "residual": residual, "residual_scale": args.residual_scale,
                  "norm": norm, "norm_position": args.position,
                  "activation": "relu", "init": "he_normal", "dropout": 0.0},
        "penalty": {"l2": 0.0, "l1": 0.0},
        "train": {"optimizer": "sgd", "lr": args.lr, "momentum": args.momentum, "batch_size": args.batch_size,
                  "epochs": args.epochs, "early_stopping": {"patience": None, "restore_best": False}},
        "track": {"tensorboard": False, "plots": False, "checkpoint": False},
        "seed": list(range(args.seeds)),
    }


def mean_or_nan(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if len(finite) == len(values) else float("nan")


def spread(values: list[float]) -> str:
    return f"{min(values):.3g}-{max(values):.3g}" if all(math.isfinite(v) for v in values) else "nan"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norms", default="none,batch", help="normalizations to compare, comma-separated")
    parser.add_argument("--position", default="before", choices=("before", "after"),
                        help="normalization before or after the ReLU (model.norm_position)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--residual-scale", type=float, default=1.0,
                        help="alpha of the residual networks' h <- h + alpha * phi(W h) (model.residual_scale)")
    parser.add_argument("--checkpoints", default="1,5,10,20", help="epochs whose training loss is shown too")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, steadiest on a shared machine; 0: torch's default)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints = [e for e in (int(v) for v in args.checkpoints.split(",")) if e < args.epochs] + [args.epochs]

    header = ["norm", "model", *[f"loss ep {e}" for e in checkpoints[:-1]], f"train loss ep {args.epochs}",
              "min-max", "train acc", "val acc", "min-max", "time s"]
    rows, runs = [], []
    for norm in args.norms.split(","):
        for kind, depth, residual in MODELS:
            started = time.perf_counter()
            result = fit(recipe_for(args, depth, residual, norm))
            elapsed = time.perf_counter() - started
            members = result.summary.get("per_member", [result.summary])
            curve = {e: [r["train_loss"] for r in result.history if r["epoch"] == e] for e in checkpoints}
            final_loss = [m["train"]["loss"] for m in members]
            train_acc = [m["train"]["accuracy"] for m in members]
            val_acc = [m["val"]["accuracy"] for m in members]
            diverged = [m["diverged_at_epoch"] for m in members]
            for m, d in enumerate(diverged):
                if d is not None:  # a frozen member keeps its last finite weights; report it as failed
                    final_loss[m] = train_acc[m] = val_acc[m] = float("nan")
            name = f"{kind} {depth}"
            rows.append([norm, name, *[mean_or_nan(curve[e]) if len(curve[e]) == args.seeds else float("nan")
                                       for e in checkpoints[:-1]],
                         mean_or_nan(final_loss), spread(final_loss), mean_or_nan(train_acc), mean_or_nan(val_acc),
                         spread(val_acc), elapsed])
            runs.append({"norm": norm, "model": name, "depth": depth, "residual": residual,
                         "diverged_at_epoch": diverged, "final_train_loss": final_loss, "train_accuracy": train_acc,
                         "val_accuracy": val_acc, "history": result.history, "time_s": elapsed})
            print(f"{norm:>6} {name:<12} done in {elapsed:.0f} s", file=sys.stderr)
    where = f", norm {args.position} the ReLU" if args.norms != "none" else ""
    title = (f"mnist1d, ReLU MLPs of width {args.width}{where}, residual scale {args.residual_scale}, He init, SGD lr {args.lr} momentum {args.momentum}, "
             f"batch {args.batch_size}, {args.epochs} epochs, {args.seeds} seeds per row (one population each)")
    table = format_table(header, rows, title=title)
    print(table)
    print("loss ep E: mean over the epoch's mini-batches; the last columns score the final weights; "
          "nan: the members diverged")
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "tamenet": tamenet.__version__, "threads": torch.get_num_threads()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "table": table, "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
