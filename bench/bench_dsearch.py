"""A search spread over processes: the 130-fit search of bench_search.py on 1 and on 2 processes of this machine.

The job is bench_search.py's (digits, MLP 64-256-256-10, SGD momentum 0.9, lr 0.1, batch 64, 30 epochs, 10-fold
cross-validation over 13 L2 strengths from 1e-6 to 1e6: 130 members). It runs through the command line, as a
user would, three ways, one after another in this one run:

1. ``tamenet search ...`` in one process with 1 thread (OMP_NUM_THREADS=1);
2. the same in one process with 2 threads (torch's intra-op threads over both cores);
3. ``tamenet search ... --nproc 2``: torchrun starts 2 processes of 1 thread each; each trains one chunk of 65
   members (chunks dealt round robin), rank 0 gathers the scores (gloo) and writes search.json.

Each is timed from outside (the whole command: interpreter start, torch import, torchrun's rendezvous, the
training, the exchange, the writing) and from inside (search.json's `wall_time_s`, the main rank's view). The
script checks that the 2-process table equals the 1-process, 1-thread one bit for bit (the same
threads per process: the same sums), and reports the ratios; it asserts nothing
about speed. On 2 cores, 2 processes of 1 thread cannot beat 1 process of 2 threads by much: the population
engine already spreads one large population over the cores (see docs/scaling.md for when ranks pay).

    .venv/bin/python bench/bench_dsearch.py            # 30 epochs, 1 repeat (several minutes on 2 cores)
    .venv/bin/python bench/bench_dsearch.py --quick    # 3 epochs: a smoke run

Writes bench/results/dsearch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_search import FOLDS, GRID, tamenet_recipe  # noqa: E402  (bench/, beside this script)
from machine import machine_info  # noqa: E402

DEFAULT_OUT = HERE / "results" / "dsearch.json"
WAYS = {
    "1 process, 1 thread": {"nproc": 1, "threads": 1},
    "1 process, 2 threads": {"nproc": 1, "threads": 2},
    "2 processes, 1 thread each": {"nproc": 2, "threads": 1},
}


def run_way(name: str, way: dict, recipe: Path, work: Path) -> dict:
    """One command line, timed from outside; its search.json's table and times."""
    out = work / name.replace(" ", "_").replace(",", "")
    argv = [sys.executable, "-m", "tamenet", "search", str(recipe), "--grid", f"penalty.l2={','.join(map(str, GRID))}",
            "--folds", str(FOLDS), "--no-refit", "--stop-share", "0", "--out", str(out), "--no-report"]
    if way["nproc"] > 1:
        argv += ["--nproc", str(way["nproc"])]
    env = {**os.environ, "OMP_NUM_THREADS": str(way["threads"]), "MKL_NUM_THREADS": str(way["threads"]),
           "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=work)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{name}: exit code {done.returncode}\n{done.stderr[-3000:]}")
    result = json.loads((out / "search.json").read_text())
    return {"command_s": round(elapsed, 2), "search_wall_s": result["wall_time_s"],
            "cv_train_time_s": result["cv_train_time_s"], "processes": result.get("processes", 1),
            "threads_per_process": way["threads"], "chunks": result["memory"]["chunks"],
            "best_l2": result["best"]["penalty.l2"], "best_cv_accuracy": result["best"]["cv_accuracy_mean"],
            "_candidates": result["candidates"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of every member (default 30)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 epochs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    args = parser.parse_args()
    epochs = 3 if args.quick else args.epochs
    job = argparse.Namespace(lr=0.1, batch_size=64, epochs=epochs)
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        recipe = work / "bench-dsearch.yaml"
        recipe.write_text(yaml.safe_dump(tamenet_recipe(job)))
        for name, way in WAYS.items():
            figures[name] = run_way(name, way, recipe, work)
            print(f"{name:28s} command {figures[name]['command_s']:7.1f} s, search {figures[name]['search_wall_s']:7.1f}"
                  f" s (main rank), chunks {figures[name]['chunks']}", flush=True)
    tables = {name: f.pop("_candidates") for name, f in figures.items()}
    reference = tables["1 process, 1 thread"]
    same = {name: json.dumps(table) == json.dumps(reference) for name, table in tables.items()}  # bit for bit (NaN too)
    largest = {name: max(abs(a[f"cv_{q}_folds"][i] - b[f"cv_{q}_folds"][i]) for a, b in zip(table, reference)
                         for q in ("loss", "accuracy") for i in range(FOLDS)
                         if a[f"cv_{q}_folds"][i] == a[f"cv_{q}_folds"][i])
               for name, table in tables.items()}
    equal = same["2 processes, 1 thread each"]
    base = figures["1 process, 1 thread"]["command_s"]
    ratios = {name: round(base / f["command_s"], 3) for name, f in figures.items()}
    print(f"speed-up over 1 process of 1 thread (whole command): {ratios}")
    for name in tables:
        print(f"{name}: table {'equal bit for bit to' if same[name] else 'DIFFERENT from'} 1 process of 1 thread "
              f"(largest score difference {largest[name]:.3g})")
    if not all(same.values()):
        print("(MKL's batched matmul can round a member differently in batches of other sizes or places, e.g. once "
              "members left; MKL_CBWR=AVX512,STRICT for every run makes it exact: docs/scaling.md)")
    print(f"MKL_CBWR={os.environ.get('MKL_CBWR', '(unset)')}")
    print("note: the machine was shared with other jobs while this ran; the ratios were measured side by side")
    report = {"machine": machine_info(), "load_average_at_end": os.getloadavg(), "epochs": epochs,
              "members": len(GRID) * FOLDS, "mkl_cbwr": os.environ.get("MKL_CBWR"), "ways": figures, "speedup_vs_1x1": ratios,
              "table_equal_to_1x1": same, "largest_score_difference_vs_1x1": largest,
              "shared_machine": True}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
