"""GPU bench (issue 13, SPEC I1): one script, run once on a lent GPU, that records side by side

1. the dense matmul rate in each precision (fp32 with TF32 off, tf32, bf16, fp16): `torch.mm` of two N x N matrices,
   and a population's forward + backward pass in each (its time relative to fp32: the CPU's refusals);
2. the default job (`tamenet train` with the default recipe) on the device, its time and test accuracy;
3. the search benchmark of bench/bench_search.py (130 fits: 13 L2 strengths x 10 folds as one population) on the
   device, against scikit-learn's GridSearchCV with n_jobs=-1 on the same machine's CPU; the population's achieved
   FLOP rate as a share of the matmul rate in the chosen precision (targets: 30x GridSearchCV, half the matmul rate);
4. time per member-epoch for populations of M = 1, 4, 16, 64, 256, 1024 members (the search benchmark's network,
   each member on its own batch order), with each M's FLOP rate and share of the matmul rate: where the GPU saturates.

    python bench/bench_gpu.py                      # on a CUDA machine: everything, in under 8 minutes on an H200
    python bench/bench_gpu.py --device cpu --quick # here: the CPU, M up to 256, a short search (a smoke run)

Writes `bench/results/gpu-<device>.json` and `.md` (a markdown table of everything). Nothing is asserted; each
target prints MET or NOT MET. The CPU run uses `torch.get_num_threads()` threads (set with --threads).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine_info  # noqa: E402  (bench/machine.py, beside this script)

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TARGET_SEARCH_SPEEDUP = 30.0  # the issue's: tamenet's search on the GPU vs GridSearchCV on the CPU
TARGET_MATMUL_SHARE = 0.5


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rates(device: torch.device, size: int, precisions: list[str], repeats: int = 7) -> dict[str, dict]:
    """GFLOP/s of an N x N `torch.mm` per precision (median of `repeats` after a warm-up); tf32 with TF32 allowed."""
    from tamenet.devices import cpu_has_native_bf16
    from tamenet.train.precision import tf32_matmuls

    rates = {}
    for name in precisions:
        emulated = device.type == "cpu" and (name == "fp16" or (name == "bf16" and not cpu_has_native_bf16()))
        n = min(size, 512) if emulated else size  # an emulated precision is slow: a smaller matrix
        a = torch.randn(n, n, device=device, dtype=DTYPES[name])
        b = torch.randn(n, n, device=device, dtype=DTYPES[name])
        with tf32_matmuls(name == "tf32"):
            torch.mm(a, b)
            sync(device)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                torch.mm(a, b)
                sync(device)
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rates[name] = {"size": n, "median_s": med, "gflops": 2 * n**3 / med / 1e9}
        print(f"  matmul {name}: {n}x{n} {rates[name]['gflops']:.1f} GFLOP/s", flush=True)
    return rates


def step_ratios(device: torch.device, members: int = 32, repeats: int = 7) -> dict[str, dict]:
    """One forward + backward pass of a population (the search benchmark's MLP, M members, batch 64 each) per
    precision (autocast at bf16/fp16, TF32 switches at tf32), and its time relative to fp32's: the figures behind
    the CPU's refusals (`tamenet.devices`)."""
    from tamenet.models import build_model
    from tamenet.recipes import load_recipe
    from tamenet.train.precision import make_precision

    recipe = load_recipe(population_recipe(members, device.type, "fp32", 1))
    model = build_model(recipe.model, n_in=64, n_out=10, seeds=list(range(members))).to(device)
    x = torch.randn(members, 64, 64, device=device)
    y = torch.randint(0, 10, (members, 64), device=device)
    times = {}
    for name in PRECISIONS:
        mixed = make_precision(name, device, members)

        def once() -> None:
            model.zero_grad(set_to_none=True)
            with (mixed.forward_context() if mixed is not None else torch.autocast(device.type, enabled=False)):
                out = model(x)
                loss = torch.nn.functional.cross_entropy(out.float().flatten(0, 1), y.flatten())
            loss.backward()
            sync(device)

        once()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            once()
            samples.append(time.perf_counter() - t0)
        times[name] = statistics.median(samples)
    ratios = {k: {"step_s": v, "vs_fp32": v / times["fp32"]} for k, v in times.items()}
    for k, v in ratios.items():
        print(f"  forward + backward, M={members}, {k}: {v['step_s'] * 1e3:.2f} ms = {v['vs_fp32']:.2f}x fp32", flush=True)
    return ratios


def population_recipe(members: int, device: str, precision: str, epochs: int) -> dict[str, Any]:
    """The search benchmark's network and optimizer (digits, MLP 64-256-256-10, SGD 0.1 momentum 0.9, batch 64),
    M members with their own seeds (each its own batch order and initialization), no validation pass."""
    import bench_search

    args = argparse.Namespace(lr=0.1, batch_size=64, epochs=epochs)
    recipe = bench_search.tamenet_recipe(args, l2=[1e-4] * members)
    recipe["seed"] = list(range(members))
    recipe["data"]["val"] = 0.0
    recipe["train"].update(device=device, precision=precision, force_precision=True)
    return recipe


def scaling(device: torch.device, members: list[int], precision: str, epochs: int, mm_gflops: float) -> list[dict]:
    """Time per member-epoch for each M: the epochs after the first (warm-up) timed between epoch ends."""
    from tamenet.api import fit
    import bench_search

    rows = []
    n_train = _train_rows()
    for m in members:
        ends: list[float] = []

        def mark(record, trainer) -> None:  # epoch_end reads the metrics back: the device is synchronized here
            ends.append(time.perf_counter())

        result = fit(population_recipe(m, device.type, precision, epochs + 1), callbacks=[mark])
        per_epoch = (ends[-1] - ends[0]) / epochs
        fps = bench_search.flops_per_sample(64, 10)["train"]
        gflops = fps * n_train * m / per_epoch / 1e9
        row = {"members": m, "precision": precision, "epoch_s": per_epoch, "member_epoch_ms": per_epoch / m * 1e3,
               "gflops": gflops, "matmul_share": gflops / mm_gflops, "train_rows": n_train}
        rows.append(row)
        print(f"  M={m:5d} {precision}: {per_epoch:.3f} s/epoch, {row['member_epoch_ms']:.3f} ms per member-epoch, "
              f"{gflops:.1f} GFLOP/s = {row['matmul_share']:.0%} of the matmul", flush=True)
        del result
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _train_rows() -> int:
    """digits with data.val 0 and data.test 0.2: the training rows the scaling populations see."""
    from tamenet.data import prepare
    from tamenet.recipes import load_recipe

    return int(len(prepare(load_recipe(population_recipe(1, "cpu", "fp32", 1)).data).y_train))


def default_job(device: torch.device, precision: str, epochs: int | None) -> dict[str, Any]:
    """The default recipe (`tamenet train` without arguments) on the device, timed as one `fit` call."""
    from tamenet.api import fit
    from tamenet.recipes import DEFAULT_RECIPE

    recipe = copy.deepcopy(DEFAULT_RECIPE)
    recipe["train"].update(device=device.type, precision=precision, force_precision=True)
    if epochs is not None:
        recipe["train"]["epochs"] = epochs
    recipe.setdefault("track", {}).update(tensorboard=False, plots=False, checkpoint=False)
    t0 = time.perf_counter()
    result = fit(recipe)
    wall = time.perf_counter() - t0
    test = result.summary.get("test", {})
    print(f"  default job ({recipe['train']['epochs']} epochs, {precision}): {wall:.1f} s, test {test}", flush=True)
    return {"time_s": wall, "epochs": recipe["train"]["epochs"], "precision": precision, "test": test}


def search_benchmark(device: torch.device, precision: str, quick: bool, mm_gflops: float, out: Path) -> dict:
    """bench_search.py's tamenet search (on the device, at the precision) and GridSearchCV (n_jobs=-1, the CPU)."""
    import bench_search

    plain = bench_search.tamenet_recipe

    def on_device(args, **kwargs):
        recipe = plain(args, **kwargs)
        recipe["train"].update(device=device.type, precision=precision, force_precision=True)
        return recipe

    bench_search.tamenet_recipe = on_device
    try:
        argv = ["--only", "tamenet", "sklearn", "--repeats", "1", "--out", str(out)]
        bench_search.main(argv + (["--quick"] if quick else []))
    finally:
        bench_search.tamenet_recipe = plain
    saved = json.loads(out.read_text())
    verdict = saved["verdict"]
    share = verdict["population_gflops"] / mm_gflops
    speedup = verdict.get("speedup_vs_gridsearch")
    return {"precision": precision, "tamenet_s": saved["rows"][0]["median_s"],
            "gridsearch_s": next(r["median_s"] for r in saved["rows"] if r["name"] == "sklearn"),
            "speedup_vs_gridsearch": speedup, "speed_met": speedup is not None and speedup >= TARGET_SEARCH_SPEEDUP,
            "population_gflops": verdict["population_gflops"], "matmul_gflops": mm_gflops, "matmul_share": share,
            "matmul_met": share >= TARGET_MATMUL_SHARE, "best_l2": saved["rows"][0]["best_l2"],
            "tamenet_cv_accuracy": verdict.get("tamenet_cv_accuracy"),
            "gridsearch_cv_accuracy": verdict.get("gridsearch_cv_accuracy"), "epochs": saved["settings"]["epochs"]}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# bench_gpu.py on {result['device_name']} ({result['created']})", "",
             f"`{' '.join(result['command'])}`; torch {result['machine']['torch']}, "
             f"{result['machine']['torch_num_threads']} CPU thread(s), {result['machine']['cpu_count']} cores. "
             "Ratios are from this one run.", "",
             "| precision | matmul N | GFLOP/s | population fwd+bwd (M=32) | x fp32 |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['size']} | {v['gflops']:.1f} | {result['steps'][k]['step_s'] * 1e3:.2f} ms | "
              f"{result['steps'][k]['vs_fp32']:.2f} |" for k, v in result["matmul"].items()]
    if result.get("default_job"):
        job = result["default_job"]
        lines += ["", f"Default job: {job['time_s']:.1f} s for {job['epochs']} epochs at {job['precision']}, "
                      f"test {job['test']}."]
    if result.get("search"):
        s = result["search"]
        lines += ["", "| search (130 fits) | seconds | |", "|---|---|---|",
                  f"| tamenet, {result['device']}, {s['precision']} | {s['tamenet_s']:.2f} | CV acc {s['tamenet_cv_accuracy']} |",
                  f"| GridSearchCV n_jobs=-1, CPU | {s['gridsearch_s']:.2f} | CV acc {s['gridsearch_cv_accuracy']} |",
                  "", f"Speed-up {s['speedup_vs_gridsearch']:.2f}x (target {TARGET_SEARCH_SPEEDUP:.0f}x: "
                      f"{'MET' if s['speed_met'] else 'NOT MET'}); the population at {s['population_gflops']:.1f} "
                      f"GFLOP/s = {s['matmul_share']:.1%} of the {s['precision']} matmul (target 50 %: "
                      f"{'MET' if s['matmul_met'] else 'NOT MET'})."]
    lines += ["", "| M | precision | s / epoch | ms / member-epoch | GFLOP/s | share of matmul |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['members']} | {r['precision']} | {r['epoch_s']:.3f} | {r['member_epoch_ms']:.3f} | "
              f"{r['gflops']:.1f} | {r['matmul_share']:.1%} |" for r in result["scaling"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where tamenet trains (default: cuda when PyTorch sees a GPU)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the precision of the default job, the search and the scaling curve (default: bf16 on "
                             "cuda, fp32 on the CPU)")
    parser.add_argument("--members", type=int, nargs="+", default=None,
                        help="population sizes of the scaling curve (default: 1 4 16 64 256 1024 on cuda, up to 256 "
                             "on the CPU)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per population size (after one warm-up)")
    parser.add_argument("--matmul-size", type=int, default=None, help="N of the N x N matmul (8192 cuda, 2048 CPU)")
    parser.add_argument("--default-epochs", type=int, default=None,
                        help="epochs of the default job (default: the recipe's on cuda, 3 on the CPU)")
    parser.add_argument("--skip", nargs="*", choices=["default", "search", "scaling"], default=[],
                        help="leave these parts out")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 3-epoch search, M up to 16, 1 timed epoch")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/gpu-<device>.json)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu.py: --device cuda needs a GPU that PyTorch sees; use --device cpu", file=sys.stderr)
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from tamenet.allocator import keep_freed_memory

    keep_freed_memory()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    precision = args.precision or ("bf16" if gpu else "fp32")
    members = args.members or ([1, 4, 16, 64, 256, 1024] if gpu else [1, 4, 16, 64, 256])
    if args.quick:
        members, args.epochs = [m for m in members if m <= 16], 1
    out = args.out or HERE / "results" / f"gpu-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if gpu else (machine_info()["processor"] or "CPU")
    print(f"bench_gpu.py on {name}: precision {precision}, M = {members}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, load average {os.getloadavg() if hasattr(os, 'getloadavg') else '?'}"
          "; the machine may be shared: compare ratios from this one run", flush=True)

    print("1. dense matmul rate per precision", flush=True)
    matmul = matmul_rates(device, args.matmul_size or (8192 if gpu else 2048), list(PRECISIONS))
    mm = matmul[precision]["gflops"]
    result: dict[str, Any] = {"command": [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])],
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device.type,
                              "device_name": name, "machine": machine_info(("sklearn",)), "precision": precision,
                              "matmul": matmul}
    print("1b. a population's forward + backward pass per precision", flush=True)
    result["steps"] = step_ratios(device)
    if "default" not in args.skip:
        print("2. the default job", flush=True)
        result["default_job"] = default_job(device, precision, args.default_epochs or (None if gpu else 3))
    if "search" not in args.skip:
        print("3. the search benchmark against GridSearchCV(n_jobs=-1) on this machine's CPU", flush=True)
        result["search"] = search_benchmark(device, precision, args.quick, mm, out.with_name(out.stem + "-search.json"))
    if "scaling" not in args.skip:
        print("4. time per member-epoch by population size", flush=True)
        result["scaling"] = scaling(device, members, precision, args.epochs, mm)
    else:
        result["scaling"] = []
    result["bench_time_s"] = time.perf_counter() - started
    out.write_text(json.dumps(result, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')} in {result['bench_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
