"""Compression and transfer studies on `digits` (H1-H4), each one population of settings x 3 seeds.

- pruning: test accuracy against the target sparsity (magnitude, layer-wise, gradual over the first
  epochs), dense included as sparsity 0;
- quantization-aware training: test accuracy against the weights' bit width (0 = float);
- distillation: a wide teacher (3 seeds, logits averaged), then a narrow student from scratch
  (alpha 0) against distilled students at T = 1, 4, 20;
- transfer: a source trained on digits 0-4, targets 5-9 with few labelled images per class: from
  scratch, hard (freeze the first layer), soft (copied layers at 0.1 x lr) and L2-SP.

Every figure is the mean and the spread (min-max) over seeds of the test accuracy of the member
that early stopping chose (restore_best), measured in one run of this script.

    OMP_NUM_THREADS=1 python bench/bench_compress.py [--only pruning,qat,distill,transfer]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tamenet.api import fit  # noqa: E402

SEEDS = [0, 1, 2]
QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
BASE = {"data": {"name": "digits"}, "model": {"widths": [256, 256]},
        "train": {"epochs": 40, "lr": 3e-3, "batch_size": 64, "early_stopping": {"patience": 10}}, "track": QUIET}


def _grid(values: list) -> tuple[list, list[int]]:
    """Each value repeated for every seed, and the matching seeds (one population)."""
    return [v for v in values for _ in SEEDS], [s for _ in values for s in SEEDS]


def _table(title: str, label: str, values: list, result) -> None:
    test = [m["test"]["accuracy"] for m in result.summary["per_member"]]
    print(f"\n{title}\n{label:>14}  test accuracy (mean, min-max over {len(SEEDS)} seeds)")
    for i, value in enumerate(values):
        scores = np.array(test[i * len(SEEDS):(i + 1) * len(SEEDS)])
        print(f"{value!s:>14}  {scores.mean():.4f}  ({scores.min():.4f}-{scores.max():.4f})")


def pruning() -> None:
    values = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98]
    sparsity, seeds = _grid(values)
    recipe = {**BASE, "prune": {"sparsity": sparsity, "start_epoch": 0, "end_epoch": 10}, "seed": seeds}
    _table("pruning (magnitude, layer-wise, cubic schedule over epochs 0-10)", "sparsity", values, fit(recipe))


def qat() -> None:
    values = [0, 8, 6, 4, 3, 2]
    bits, seeds = _grid(values)
    recipe = {**BASE, "quantize": {"bits": bits, "per_channel": True}, "seed": seeds}
    _table("quantization-aware training (symmetric, per output unit; 0 = float)", "bits", values, fit(recipe))


def distill() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        teacher_dir = Path(tmp) / "teacher"
        teacher = fit({**BASE, "model": {"widths": [512, 512], "dropout": 0.2}, "seed": SEEDS,
                       "track": {**QUIET, "checkpoint": True}}, out=teacher_dir)
        _table("teacher (512-512, dropout 0.2), each seed alone", "member", ["teacher"], teacher)
        settings = [("scratch", 1.0, 0.0), ("T=1", 1.0, 0.5), ("T=4", 4.0, 0.5), ("T=20", 20.0, 0.5),
                    ("T=4 a=0.9", 4.0, 0.9)]
        temperature, seeds = _grid([t for _, t, _ in settings])
        alpha, _ = _grid([a for _, _, a in settings])
        student = {**BASE, "model": {"widths": [16]}, "seed": seeds,
                   "distill": {"teacher": str(teacher_dir), "temperature": temperature, "alpha": alpha}}
        _table("student (16 hidden units) taught by the teacher's averaged logits", "setting",
               [name for name, _, _ in settings], fit(student))


def _npz(path: Path, classes: list[int], per_class: int | None, seed: int = 0) -> str:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    keep = []
    for c in classes:
        rows = np.flatnonzero(y == c)
        keep.extend(rows if per_class is None else rng.choice(rows, per_class * 3, replace=False))
    keep = np.sort(np.array(keep))
    np.savez(path, X=X[keep], y=y[keep])
    return str(path)


def transfer() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        fit({**BASE, "data": {"name": "npz", "path": _npz(Path(tmp) / "low.npz", [0, 1, 2, 3, 4], None)},
             "seed": 0, "track": {**QUIET, "checkpoint": True}}, out=source)
        settings = [("scratch", {}), ("hard", {"train.freeze": 1}), ("soft", {"train.copied_lr": 0.1}),
                    ("L2-SP", {"penalty.l2_sp": 0.1, "penalty.l2_sp_head": 0.01})]
        for per_class in (5, 10, 50):
            # 3 x per_class images of each target class: a third each for training, validation and test
            path = _npz(Path(tmp) / f"high{per_class}.npz", [5, 6, 7, 8, 9], per_class)
            values, results = [], []
            for name, changes in settings:
                train = {**BASE["train"], "init_from": None if name == "scratch" else str(source)}
                train.update({k.split(".")[1]: v for k, v in changes.items() if k.startswith("train.")})
                penalty = {k.split(".")[1]: v for k, v in changes.items() if k.startswith("penalty.")}
                recipe = {**BASE, "data": {"name": "npz", "path": path, "val": 1 / 3, "test": 1 / 3}, "train": train,
                          "penalty": penalty, "seed": SEEDS}
                results.append(fit(recipe))
                values.append(name)
            print(f"\ntransfer to digits 5-9, {per_class} training images per class (source: digits 0-4)")
            for name, result in zip(values, results):
                scores = np.array([m["test"]["accuracy"] for m in result.summary["per_member"]])
                print(f"{name:>14}  {scores.mean():.4f}  ({scores.min():.4f}-{scores.max():.4f})")


STUDIES = {"pruning": pruning, "qat": qat, "distill": distill, "transfer": transfer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(STUDIES), help=f"comma-separated studies of {list(STUDIES)}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    for name in args.only.split(","):
        started = time.perf_counter()
        STUDIES[name]()
        print(f"({name}: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
