"""Compression and transfer studies on `mnist1d` (H1, H3, H4), 3 seeds each, one population per setting group.

- lottery: iterative magnitude pruning of an MLP 40-256-256-10 (layer-wise, 20 % of the survivors per
  round, 10 rounds to 1 - 0.8^10 = 89 % sparsity), the survivors rewound to their initialization (the
  winning ticket) against re-initialized at random (the control); the dense net is round 0. Both arms
  and the 3 seeds train as one population per round (`tamenet.compress.lottery.iterative_pruning`);
- distill: a 1-D CNN teacher (3 seeds, logits averaged), then an MLP student from scratch (alpha 0)
  against distilled students at T = 1, 4, 20 (alpha 0.5), all students one population;
- transfer: a source MLP trained on mnist1d digits 0-4, targets 5-9 with 5, 10, 50 labelled examples per
  class (each a third of 3 x that many rows: train, validation, test): from scratch, hard (the first
  layer copied and frozen), soft (copied layers at 0.1 x lr) and L2-SP, as bench_compress.py on digits.

Every figure is the test accuracy of the weights early stopping chose (restore_best), mean +- standard
deviation over the seeds, from one run of this script. mnist1d is generated once and read from an .npz
file by every run (generating it costs seconds per run).

    OMP_NUM_THREADS=1 python bench/bench_lottery.py [--only lottery,distill,transfer] [--epochs E] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tamenet.api import fit  # noqa: E402
from tamenet.compress.lottery import iterative_pruning  # noqa: E402
from tamenet.config import DataConfig  # noqa: E402
from tamenet.data.datasets import load_dataset  # noqa: E402

SEEDS = [0, 1, 2]
QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}


def _mnist1d(folder: Path, classes: list[int] | None = None, per_class: int | None = None, name: str = "mnist1d"):
    """mnist1d's 5000 rows (or some classes, per_class x 3 rows of each) as an .npz data section."""
    data = load_dataset(DataConfig(name="mnist1d"))
    X, y = np.asarray(data.X), np.asarray(data.y)
    keep = np.arange(len(y))
    if classes is not None:
        rng = np.random.default_rng(0)
        keep = np.sort(np.concatenate([
            np.flatnonzero(y == c) if per_class is None else rng.choice(np.flatnonzero(y == c), 3 * per_class,
                                                                         replace=False)
            for c in classes]))
    path = folder / f"{name}.npz"
    np.savez(path, X=X[keep], y=y[keep])
    return {"name": "npz", "path": str(path)}


def _mlp(data: dict, epochs: int) -> dict:
    return {"data": data, "model": {"widths": [256, 256]},
            "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": epochs,
                      "early_stopping": {"patience": 10}}, "track": QUIET}


def _mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def lottery(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = {**_mlp(_mnist1d(Path(tmp)), args.epochs), "seed": SEEDS}
        started = time.perf_counter()

        def show(rows):
            r = rows[0]["round"]
            cells = [_mean_std([row["test_accuracy"] for row in rows if row["arm"] == arm]) for arm in ("init", "reinit")]
            sparsity = np.mean([row["sparsity"] for row in rows if row["arm"] == "init"])
            print(f"| {r:>2} | {sparsity:.3f} | {cells[0]} | {cells[1]} |  ({time.perf_counter() - started:.0f} s)",
                  flush=True)

        print(f"\nlottery ticket: MLP 40-256-256-10 on mnist1d, Adam 1e-3, {args.epochs} epochs per round "
              f"(patience 10), 20 % of the survivors pruned per layer and round; test accuracy, mean ± std over "
              f"{len(SEEDS)} seeds (round 0 is the dense net, the same for both arms)")
        print("| round | sparsity | rewound to init (winning ticket) | re-initialized (control) |")
        print("|---|---|---|---|")
        result = iterative_pruning(recipe, rounds=args.rounds, rate=0.2, rewind=["init", "reinit"], on_round=show)
        dense = np.array([row["test_accuracy"] for row in result.rows if row["round"] == 0 and row["arm"] == "init"])
        best = max((row for row in result.rows if row["arm"] == "init" and row["round"] > 0),
                   key=lambda row: row["test_accuracy"])
        print(f"dense net: {_mean_std(dense)}; the best single ticket: round {best['round']} (sparsity "
              f"{best['sparsity']:.3f}, seed {best['seed']}) at {best['test_accuracy']:.4f}")


def distill(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = _mnist1d(Path(tmp))
        teacher_dir = Path(tmp) / "teacher"
        teacher = fit({"data": data, "model": {"kind": "cnn", "channels": [32, 32, 32], "kernel_size": 5, "pool": "max",
                                               "readout": "flatten", "norm": "batch", "dropout": 0.1},
                       "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "epochs": args.epochs,
                                 "early_stopping": {"patience": 10}},
                       "track": {**QUIET, "checkpoint": True}, "seed": SEEDS}, out=teacher_dir)
        teacher_test = [m["test"]["accuracy"] for m in teacher.summary["per_member"]]
        settings = [("scratch", 1.0, 0.0), ("T=1", 1.0, 0.5), ("T=4", 4.0, 0.5), ("T=20", 20.0, 0.5)]
        temperature = [t for _, t, _ in settings for _ in SEEDS]
        alpha = [a for _, _, a in settings for _ in SEEDS]
        student = {**_mlp(data, args.epochs), "seed": [s for _ in settings for s in SEEDS],
                   "distill": {"teacher": str(teacher_dir), "temperature": temperature, "alpha": alpha}}
        test = [m["test"]["accuracy"] for m in fit(student).summary["per_member"]]
        print(f"\ndistillation on mnist1d: teacher a 1-D CNN (3 conv blocks, 32 channels; logits of its 3 seeds "
              f"averaged), student the MLP 40-256-256-10; {args.epochs} epochs (patience 10); test accuracy, "
              f"mean ± std over {len(SEEDS)} seeds")
        print("| model | test accuracy |\n|---|---|")
        print(f"| teacher (each seed alone) | {_mean_std(teacher_test)} |")
        for i, (name, t, a) in enumerate(settings):
            label = "student from scratch (alpha 0)" if name == "scratch" else f"distilled student, T = {t:g}, alpha {a}"
            print(f"| {label} | {_mean_std(test[i * len(SEEDS):(i + 1) * len(SEEDS)])} |")


def transfer(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        fit({**_mlp(_mnist1d(Path(tmp), [0, 1, 2, 3, 4], name="low"), args.epochs), "seed": 0,
             "track": {**QUIET, "checkpoint": True}}, out=source)
        settings = [("scratch", {}, {}), ("hard (freeze 1)", {"freeze": 1}, {}), ("soft (copied lr x0.1)",
                    {"copied_lr": 0.1}, {}), ("L2-SP (0.1, 0.01)", {}, {"l2_sp": 0.1, "l2_sp_head": 0.01})]
        print(f"\ntransfer on mnist1d: source MLP 40-256-256-10 on digits 0-4 (all rows), target digits 5-9 "
              f"from few examples; {args.epochs} epochs (patience 10); test accuracy, mean ± std over {len(SEEDS)} seeds")
        print("| per class | " + " | ".join(name for name, _, _ in settings) + " |")
        print("|---|" + "---|" * len(settings))
        for per_class in (5, 10, 50):
            data = {**_mnist1d(Path(tmp), [5, 6, 7, 8, 9], per_class, name=f"high{per_class}"), "val": 1 / 3,
                    "test": 1 / 3}
            cells = []
            for name, train, penalty in settings:
                recipe = _mlp(data, args.epochs)
                recipe["train"] = {**recipe["train"], "init_from": None if name == "scratch" else str(source), **train}
                recipe.update({"penalty": penalty, "seed": SEEDS})
                cells.append(_mean_std([m["test"]["accuracy"] for m in fit(recipe).summary["per_member"]]))
            print(f"| {per_class} | " + " | ".join(cells) + " |", flush=True)


STUDIES = {"lottery": lottery, "distill": distill, "transfer": transfer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(STUDIES), help=f"comma-separated studies of {list(STUDIES)}")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of every training run (default 20)")
    parser.add_argument("--rounds", type=int, default=10, help="pruning rounds of the lottery study (default 10)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; this machine may be shared with other jobs, "
          "so the times are indicative only")
    for name in args.only.split(","):
        started = time.perf_counter()
        STUDIES[name](args)
        print(f"({name}: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
