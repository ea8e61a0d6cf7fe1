"""The narrow output layer: the plain batched matmul against `NarrowProduct` (transposed products), in one process.

A dense layer with fewer than `tamenet.nn.layers.NARROW` (16) outputs computes `x W + b` as `(W^T x^T + b)^T`
and its weight gradient as `(g^T x)^T` (`NarrowProduct`). Setting `layers.NARROW = 0` turns it off (every layer
takes the plain `baddbmm` and autograd's own backward), so both paths run in the same process, in round-robin
order, and drift of the machine hits them alike:

1. the layer alone: forward and backward of `Linear(M, in, out)` on a batch [M, B, in], several shapes;
2. the search benchmark's population (`bench_search.py`'s tamenet contender: 130 members of an MLP
   64-256-256-10 on digits, 10-fold CV over 13 L2 strengths): the training loop's time and its share of a
   2048 x 2048 matmul's rate, as `bench_search.py` reports it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_narrow.py              # 1 thread, 5 epochs, 5 repeats
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_narrow.py --quick      # 2 epochs, 2 repeats

Prints both tables and writes bench/results/narrow.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from tamenet.allocator import keep_freed_memory
from tamenet.nn import Linear, layers

import bench_search
from machine import machine_info  # bench/machine.py, beside this script

HERE = Path(__file__).resolve().parent
SHAPES = [(130, 64, 256, 10), (130, 64, 256, 1), (130, 143, 256, 10), (8, 256, 512, 10), (1, 64, 256, 10),
          (130, 1024, 256, 10)]
"""(members, rows per member, inputs, outputs): the search benchmark's output layer, a regression head, its scored
rows, a wider layer, a population of one, and many rows (Monte-Carlo dropout's tiled batch)."""


def switch(narrow: bool) -> None:
    layers.NARROW = 16 if narrow else 0


def layer_step(layer: Linear, x: torch.Tensor, upstream: torch.Tensor) -> None:
    layer.weight.grad = layer.bias.grad = None
    (layer(x) * upstream).sum().backward()


def time_layers(repeats: int) -> list[dict]:
    rows = []
    for members, batch, n_in, n_out in SHAPES:
        torch.manual_seed(0)
        layer = Linear(members, n_in, n_out)
        torch.nn.init.normal_(layer.weight)
        x, upstream = torch.randn(members, batch, n_in), torch.randn(members, batch, n_out)
        times: dict[bool, list[float]] = {False: [], True: []}
        for narrow in (False, True):  # warm-up
            switch(narrow)
            layer_step(layer, x, upstream)
        for _ in range(repeats):
            for narrow in (False, True):
                switch(narrow)
                t0 = time.perf_counter()
                layer_step(layer, x, upstream)
                times[narrow].append(time.perf_counter() - t0)
        plain, narrow = statistics.median(times[False]), statistics.median(times[True])
        rows.append({"members": members, "rows": batch, "in": n_in, "out": n_out, "plain_ms": plain * 1e3,
                     "narrow_ms": narrow * 1e3, "speedup": plain / narrow})
    switch(True)
    return rows


def time_search(epochs: int, repeats: int) -> dict:
    args = argparse.Namespace(lr=0.1, batch_size=64, epochs=epochs, alpha_map="batch", n_jobs=1)
    ctx = bench_search.Context(args)
    for narrow in (False, True):  # warm-up: one epoch each
        switch(narrow)
        bench_search.run_tamenet(args, ctx, 0, epochs=1)
    loops: dict[bool, list[float]] = {False: [], True: []}
    runs: dict[bool, dict] = {}
    matmul = []
    for r in range(repeats):
        for narrow in (False, True):
            switch(narrow)
            gc.collect()
            runs[narrow] = bench_search.run_tamenet(args, ctx, r)
            loops[narrow].append(runs[narrow]["loop_s"])
        matmul.append(bench_search.matmul_rate(2048)["gflops"])
    switch(True)
    mm = statistics.median(matmul)
    n_fit = len(ctx.pool.y) - len(ctx.pool.y) // bench_search.FOLDS
    fps = bench_search.flops_per_sample(ctx.pool.X.shape[1], int(ctx.pool.y.max()) + 1)["train"]
    out = {"epochs": epochs, "repeats": repeats, "matmul_gflops": mm, "matmul_runs_gflops": matmul}
    for narrow, name in ((False, "plain"), (True, "narrow")):
        loop = statistics.median(loops[narrow])
        gflops = runs[narrow]["member_epochs"] * n_fit * fps / loop / 1e9
        out[name] = {"loop_s": loop, "loop_runs_s": loops[narrow], "gflops": gflops, "matmul_share": gflops / mm,
                     "best_l2": runs[narrow]["best_l2"], "best_cv_accuracy": runs[narrow]["best_cv_accuracy"],
                     "member_epochs": runs[narrow]["member_epochs"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the search benchmark's population")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin repeats of the search (median reported)")
    parser.add_argument("--layer-repeats", type=int, default=40, help="round-robin repeats of each layer shape")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 2 repeats, 10 layer repeats")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "narrow.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats, args.layer_repeats = 2, 2, 10
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median of {args.layer_repeats} "
          f"round-robin steps per shape (forward + backward of one Linear)")
    print(f"{'members':>7} {'rows':>5} {'in':>4} {'out':>3}  {'plain ms':>9} {'narrow ms':>9}  speedup")
    layer_rows = time_layers(args.layer_repeats)
    for row in layer_rows:
        print(f"{row['members']:>7} {row['rows']:>5} {row['in']:>4} {row['out']:>3}  {row['plain_ms']:9.3f} "
              f"{row['narrow_ms']:9.3f}  {row['speedup']:.2f}x")
    print(f"\nsearch benchmark's population (130 members, {args.epochs} epochs), {args.repeats} round-robin repeats:")
    search = time_search(args.epochs, args.repeats)
    for name in ("plain", "narrow"):
        s = search[name]
        print(f"  {name:6s} loop {s['loop_s']:.2f} s (runs {', '.join(f'{v:.2f}' for v in s['loop_runs_s'])}) "
              f"= {s['gflops']:.1f} GFLOP/s = {s['matmul_share']:.1%} of a 2048 matmul's {search['matmul_gflops']:.1f}; "
              f"chosen l2 {s['best_l2']:g}, cv accuracy {s['best_cv_accuracy']:.4f}")
    print(f"  narrow / plain loop time: {search['narrow']['loop_s'] / search['plain']['loop_s']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "layers": layer_rows, "search": search}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
