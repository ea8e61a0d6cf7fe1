"""Monte-Carlo dropout benchmark: one plain pass vs T batched masks vs a Python loop of T passes.

Trains two models on scikit-learn's ``load_digits`` (tamenet's split: test 0.2, validation 0.3
of the rest): the default job (``tamenet.DEFAULT_RECIPE``: 64-1024-1024-10, BatchNorm, dropout
``[0.2, 0.5, 0.5]`` on the input and both hidden layers) and the same network with dropout only on
the last hidden layer (``[0, 0, 0.5]``). Then, on the test rows, times

* a plain pass (eval mode, no dropout),
* Monte-Carlo dropout with T masks batched (``tamenet.mc_dropout.mc_outputs``: the rows tiled T times;
  for the MLP, everything before the first active dropout computed once),
* a Python loop of T passes with dropout sampling on (the same masks' cost, one pass at a time),

each the median of ``--repeats`` timings after a warm-up, in round-robin order. The target is
"T = 20 costs at most 3x a single pass"; the script reports for which model it is met and
asserts nothing.

    .venv/bin/python bench/bench_mc.py                    # T = 20, 1 thread, 15 repeats
    .venv/bin/python bench/bench_mc.py --threads 0 --epochs 10 --device cuda

Writes the raw figures to ``bench/results/mc.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import tamenet
from tamenet import DEFAULT_RECIPE, fit
from tamenet.mc_dropout import MC_STEP, mc_outputs, mc_sampling

TARGET_RATIO = 3.0
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "mc.json"


def recipes(epochs: int | None) -> dict[str, dict]:
    """The default job and its variant with dropout on the last hidden layer only."""
    base = copy.deepcopy(DEFAULT_RECIPE)
    base["track"] = {"tensorboard": False, "plots": False, "checkpoint": False}
    if epochs is not None:
        base["train"]["epochs"] = epochs
    last = copy.deepcopy(base)
    last["model"]["dropout"] = [0.0, 0.0, 0.5]
    return {"default [0.2, 0.5, 0.5]": base, "last hidden only [0, 0, 0.5]": last}


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_model(model, X: torch.Tensor, samples: int, repeats: int, device: str) -> dict[str, float]:
    model.eval()

    @torch.no_grad()
    def plain() -> None:
        model(X)

    def batched() -> None:
        mc_outputs(model, X, samples)

    @torch.no_grad()
    def loop() -> None:
        with mc_sampling(model):
            for t in range(samples):
                model.random.step = MC_STEP + t
                model(X)

    contenders = {"plain pass": plain, f"MC T={samples} batched": batched, f"MC T={samples} loop": loop}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="T, the number of dropout masks")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--epochs", type=int, default=None, help="train for fewer epochs (default: the recipe's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the models are trained on the CPU)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    results = []
    for name, recipe in recipes(args.epochs).items():
        trained = fit(recipe)
        X = trained.data.X_test.to(args.device)
        model = trained.model.to(args.device)
        figures = bench_model(model, X, args.samples, args.repeats, args.device)
        plain = figures["plain pass"]
        results.append({"model": name, "rows": len(X), "test_accuracy": trained.summary["test"]["accuracy"],
                        **{k: v for k, v in figures.items()},
                        **{f"{k} / plain": v / plain for k, v in figures.items()}})

    header = ["model", "plain pass", f"MC T={args.samples} batched", f"MC T={args.samples} loop"]
    print(f"{results[0]['rows']} test rows of digits, device {args.device}, {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats}")
    print(f"{'model':<30} {'plain pass':>12} {'batched':>20} {'loop':>20}   target (batched <= {TARGET_RATIO:g}x)")
    for row in results:
        cells = [f"{row[h] * 1e3:8.2f} ms ({row[h + ' / plain']:5.2f}x)" for h in header[2:]]
        met = "met" if row[header[2] + " / plain"] <= TARGET_RATIO else "NOT met"
        print(f"{row['model']:<30} {row['plain pass'] * 1e3:9.2f} ms {cells[0]:>20} {cells[1]:>20}   {met}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    info = {"tamenet": tamenet.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(), "device": args.device,
            "samples": args.samples, "repeats": args.repeats, "target_ratio": TARGET_RATIO}
    args.out.write_text(json.dumps({"info": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
