"""Data-parallel training on this machine: the default job on 1 process and on 2 (`tamenet train --nproc 2`).

Each row is the default job (`tamenet train`, the digits MLP 64-1024-1024-10 with dropout and BatchNorm,
batch 64) for a fixed number of epochs (early stopping off, so every row does the same work), run as a
fresh command from the outside:

* 1 process, 1 thread (`OMP_NUM_THREADS=1`): the reference;
* 1 process, N threads: the same cores given to one process's intra-op threads instead;
* N processes (`--nproc N`, torchrun, gloo, 1 thread each): each trains on 1/N of every batch and the
  gradients (1.1 million floats per step) are all-reduced.

Times: the loop's own time (`summary.json` train_time_s of rank 0, the gradient exchange included) and
the command's wall clock (torch start-up in every process, the rendezvous). The repeats run round-robin so a
machine that slows down hits every row alike; the machine may be shared with other jobs (the load average is
printed before and after). On a 2-core machine expect no gain: the exchange of every step's gradients over
loopback and the halved GEMMs cost more than the second core gives.

    .venv/bin/python bench/bench_ddp.py                 # 8 epochs, 2 repeats (a few minutes on 2 cores)
    .venv/bin/python bench/bench_ddp.py --epochs 3 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def rows(nproc: int) -> dict[str, tuple[list[str], int]]:
    """Row label -> (extra arguments, OMP threads per process)."""
    return {
        "1 process, 1 thread": ([], 1),
        f"1 process, {nproc} threads": ([], nproc),
        f"{nproc} processes (--nproc {nproc}), 1 thread each": (["--nproc", str(nproc)], 1),
    }


def run_once(extra: list[str], threads: int, epochs: int, folder: Path) -> dict:
    out = folder / f"run-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": str(threads)}
    argv = [sys.executable, "-m", "tamenet", "train", "--out", str(out), "--no-report", *extra,
            "--set", f"train.epochs={epochs}", "--set", "train.early_stopping.patience=null",
            "--set", "track.plots=false", "--set", "track.tensorboard=false"]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_ddp: {' '.join(argv)} failed ({done.returncode}): {done.stderr[-1500:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "train_s": summary["train_time_s"], "test_accuracy": summary["test"]["accuracy"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the default job per run (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row, round-robin (default 2)")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel row (default 2)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ddp.json"),
                        help="where to write the JSON record (default bench/results/ddp.json)")
    args = parser.parse_args()
    table = rows(args.nproc)
    results: dict[str, list[dict]] = {label: [] for label in table}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for label, (extra, threads) in table.items():
                results[label].append(run_once(extra, threads, args.epochs, Path(tmp)))
    load_after = os.getloadavg()
    reference = statistics.median(r["train_s"] for r in results["1 process, 1 thread"])
    print(f"default job, {args.epochs} epochs, median of {args.repeats}; {os.cpu_count()} cores, load average "
          f"{load_before[0]:.2f} before / {load_after[0]:.2f} after (the machine may be shared with other jobs)")
    print(f"{'row':<44} {'loop s':>8} {'x 1 proc':>9} {'wall s':>8} {'test acc':>9}")
    for label, runs in results.items():
        train = statistics.median(r["train_s"] for r in runs)
        wall = statistics.median(r["wall_s"] for r in runs)
        accuracy = statistics.median(r["test_accuracy"] for r in runs)
        print(f"{label:<44} {train:8.2f} {reference / train:9.2f} {wall:8.2f} {accuracy:9.4f}")
    record = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count(),
              "load_average": [load_before, load_after], "epochs": args.epochs, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
