"""One population of M convolutional networks against M separate networks: time of a training step.

A population's convolutions run as ONE grouped convolution (`tamenet.nn.Conv`); the alternative
is what a user without populations does: M separate models, one after another. Both sides run
the same tamenet model code (`build_model` with M seeds, or M times with one seed), the same
batch per member ([M, B, F] rows: members with their own batch orders, as in cross-validation),
forward, cross-entropy, backward; timings alternate between the two sides and the medians of
`--repeats` rounds of `--steps` steps are reported, with their ratio.

    .venv/bin/python bench/bench_conv_population.py                       # cnn on MNIST-1D shapes, M = 8
    .venv/bin/python bench/bench_conv_population.py --kind resnet --shape 1 8 8 --members 8

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from tamenet.config import ModelConfig
from tamenet.models import build_model


def step(models: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor) -> None:
    """Forward, loss and backward; x [M, B, F] is split among the models in order."""
    start = 0
    for model in models:
        members = model.members
        out = model(x[start:start + members])
        F.cross_entropy(out.flatten(0, 1), y[start:start + members].flatten()).backward()
        start += members


def timed(models: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        step(models, x, y)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="cnn", choices=["cnn", "resnet"])
    parser.add_argument("--shape", type=int, nargs="+", default=[1, 40], help="a row as [C, L] or [C, H, W]")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 32, 32])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ModelConfig(kind=args.kind, channels=args.channels, kernel_size=5 if len(args.shape) == 2 else 3,
                      norm="batch", input_shape=args.shape)
    n_in, m = math.prod(args.shape), args.members
    population = [build_model(cfg, n_in=n_in, n_out=10, seeds=list(range(m)))]
    singles = [build_model(cfg, n_in=n_in, n_out=10, seeds=[s]) for s in range(m)]
    x = torch.randn(m, args.batch, n_in)
    y = torch.randint(0, 10, (m, args.batch))
    for models in (population, singles):  # warm-up
        timed(models, x, y, 3)
    together, apart = [], []
    for _ in range(args.repeats):
        together.append(timed(population, x, y, args.steps))
        apart.append(timed(singles, x, y, args.steps))
    t_pop, t_single = statistics.median(together), statistics.median(apart)
    print(f"{args.kind} {args.channels} on rows {args.shape}, batch {args.batch} per member, BatchNorm, "
          f"forward + backward; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"medians of {args.repeats} x {args.steps} steps")
    print(f"{'contender':<34}  {'ms / step':>10}  {'x population':>12}")
    print(f"{f'one population of M = {m}':<34}  {t_pop * 1e3:>10.2f}  {1.0:>12.2f}")
    print(f"{f'{m} separate models, in turn':<34}  {t_single * 1e3:>10.2f}  {t_single / t_pop:>12.2f}")


if __name__ == "__main__":
    main()
