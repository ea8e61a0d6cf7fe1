"""Residual connections against degradation (F4), for convolutional networks on MNIST-1D.

He et al. ("Deep residual learning for image recognition", CVPR 2016) found that a deeper plain
network reaches a HIGHER training loss than a shallower one in the same budget (degradation: an
optimization problem, not overfitting), and that identity skips remove the effect. Here three
1-D CNNs train on MNIST-1D with the same optimizer, data and number of epochs:

* shallow plain: `--shallow` conv blocks (default 4),
* deep plain: `--depth` conv blocks (default 20),
* deep residual: the same `--depth` blocks, each adding its input to its output,

every block `conv k=5 (16 channels) -> BatchNorm -> ReLU`, no pooling, then global average pooling
and a linear layer. Each network trains as ONE population of `--seeds` members (seeds 0..S-1), so
the spread over initializations comes at the cost of one run. Reported per network: the training
loss of the final weights (evaluated on the training rows without dropout), its mean and range
over the seeds, the training and validation accuracy, and the wall time of the population.

    .venv/bin/python bench/bench_residual_cnn.py                    # 20 vs 4 vs 20 residual, 3 seeds, 5 epochs
    .venv/bin/python bench/bench_residual_cnn.py --depth 32 --epochs 10 --seeds 5

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tamenet import fit


def recipe(depth: int, *, residual: bool, seeds: int, epochs: int, lr: float, channels: int) -> dict:
    return {
        "name": f"cnn-{depth}{'-residual' if residual else ''}",
        "data": {"name": "mnist1d"},
        "model": {"kind": "cnn", "channels": [channels] * depth, "kernel_size": 5, "pool": "none",
                  "readout": "gap", "norm": "batch", "residual": residual},
        "train": {"optimizer": "adam", "lr": lr, "batch_size": 64, "epochs": epochs,
                  "early_stopping": {"patience": None, "restore_best": False}},
        "track": {"tensorboard": False, "plots": False, "checkpoint": False},
        "seed": list(range(seeds)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20, help="conv blocks of the deep networks")
    parser.add_argument("--shallow", type=int, default=4, help="conv blocks of the shallow network")
    parser.add_argument("--seeds", type=int, default=3, help="members of each population (seeds 0..S-1)")
    parser.add_argument("--epochs", type=int, default=5, help="the fixed budget")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    contenders = [(f"shallow plain ({args.shallow} blocks)", args.shallow, False),
                  (f"deep plain ({args.depth} blocks)", args.depth, False),
                  (f"deep residual ({args.depth} blocks)", args.depth, True)]
    rows = []
    for label, depth, residual in contenders:
        started = time.perf_counter()
        result = fit(recipe(depth, residual=residual, seeds=args.seeds, epochs=args.epochs, lr=args.lr,
                            channels=args.channels))
        seconds = time.perf_counter() - started
        members = result.summary["per_member"]
        losses = [m["train"]["loss"] for m in members]
        rows.append((label, result.summary["parameters"], statistics.mean(losses), min(losses), max(losses),
                     statistics.mean(m["train"]["accuracy"] for m in members),
                     statistics.mean(m["val"]["accuracy"] for m in members), seconds))
    print(f"MNIST-1D, {args.epochs} epochs of Adam (lr {args.lr}, batch 64), {args.seeds} seeds as one population "
          f"per network, torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = ("network", "params", "train loss (mean)", "min", "max", "train acc", "val acc", "time (s)")
    print("  ".join(f"{h:>17}" if i else f"{h:<28}" for i, h in enumerate(header)))
    for label, params, mean, low, high, train_acc, val_acc, seconds in rows:
        print(f"{label:<28}  {params:>17,}  {mean:>17.4f}  {low:>17.4f}  {high:>17.4f}  {train_acc:>17.4f}  "
              f"{val_acc:>17.4f}  {seconds:>17.1f}")


if __name__ == "__main__":
    main()
