"""How fast the command line answers: `tamenet --help`, a mistaken recipe and a mistaken option, side by side
with `python -c "import torch"` (what every command cost before arguments were read first) and an empty
interpreter. Target: `tamenet --help` and a bad-recipe error in under 1 s.

Each command is a fresh process timed from the outside (wall clock, interpreter start-up included: what a
user waits for). One untimed round warms the file cache, then the repeats run round-robin so that a machine
that slows down hits every command alike. The machine may be shared with other jobs: the table says the
load average before and after.

    .venv/bin/python bench/bench_cli.py               # 7 repeats
    .venv/bin/python bench/bench_cli.py --repeats 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
TARGET_S = 1.0


def commands(folder: Path) -> dict[str, list[str]]:
    bad = folder / "bad.yaml"
    bad.write_text("model: {widths: [8]}\ntrain: {lrr: 0.1}\n")
    py = [sys.executable]
    return {
        "python -c pass (interpreter only)": [*py, "-c", "pass"],
        'python -c "import torch" (reference)': [*py, "-c", "import torch"],
        "tamenet --help": [*py, "-m", "tamenet", "--help"],
        "tamenet train --help": [*py, "-m", "tamenet", "train", "--help"],
        "tamenet train bad.yaml (unknown key)": [*py, "-m", "tamenet", "train", str(bad)],
        "tamenet cv --stop-share 1.5": [*py, "-m", "tamenet", "cv", "--stop-share", "1.5"],
        "tamenet train --set model.widthz=[8]": [*py, "-m", "tamenet", "train", "--set", "model.widthz=[8]"],
        "tamenet runs (empty folder)": [*py, "-m", "tamenet", "runs", str(folder)],
    }


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each command (default 7)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp))
        codes = {name: time_once(argv, env)[1] for name, argv in cmds.items()}  # warm-up, untimed
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.repeats):
            for name, argv in cmds.items():
                times[name].append(time_once(argv, env)[0])
    load_after = os.getloadavg()
    reference = statistics.median(times['python -c "import torch" (reference)'])
    print(f"{os.cpu_count()} CPUs; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          "(a shared machine: other jobs ran meanwhile); "
          f"median of {args.repeats} fresh processes, wall clock including interpreter start-up")
    width = max(len(n) for n in cmds)
    print(f"{'command':<{width}}  {'exit':>4}  {'median':>7}  {'min-max':>13}  {'x import torch':>14}  target")
    for name, values in times.items():
        median = statistics.median(values)
        target = "" if not name.startswith("tamenet") else ("< 1 s: met" if median < TARGET_S else "< 1 s: NOT met")
        print(f"{name:<{width}}  {codes[name]:>4}  {median:6.3f}s  {min(values):5.3f}-{max(values):5.3f}s  "
              f"{median / reference:14.2f}  {target}")


if __name__ == "__main__":
    main()
