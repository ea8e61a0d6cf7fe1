"""Two versions of tamenet side by side in one run: the core and search benchmarks' tamenet contenders,
timed from this checkout's sources and from a baseline source tree, alternating, so machine load hits both alike.

    python bench/bench_versions.py --baseline OLD/src [--rounds 3]

Each round runs, for each version in turn (the order alternates between rounds), `bench_core.py --only tamenet`
(30 epochs of the 64-256-256-10 MLP on digits, 1 thread; plain PyTorch runs too, as that script's reference)
and `bench_search.py --only tamenet halving` (10-fold CV over 13 L2 strengths as one population of 130, and
with successive halving), each in a fresh interpreter with PYTHONPATH pointing at that version's sources.
It prints per contender the median of every round's times for both versions and the ratio new / baseline
(the refactor's target: within 3 %).
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

HERE = Path(__file__).resolve().parent
SOURCES = HERE.parent / "src"

JOBS = {
    "core": (["bench_core.py", "--only", "tamenet", "--threads", "1"], {"plain": "plain loop", "tamenet": "tamenet fit"}),
    "search": (["bench_search.py", "--only", "tamenet", "halving", "--sequential", "subset"],
               {"tamenet": "tamenet search (130 members)", "halving": "tamenet search --halving 3"}),
}


def run_job(job: str, src: Path, repeats: int, out: Path) -> dict[str, list[float]]:
    """One benchmark script on one version's sources; the contenders' timed runs."""
    script, contenders = JOBS[job]
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, str(HERE / script[0]), *script[1:], "--repeats", str(repeats), "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    raw = json.loads(out.read_text())["raw"]
    return {name: [run["time_s"] for run in raw[name]] for name in contenders if name in raw}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the older version's src directory")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every job once per version")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats inside each job run")
    parser.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS))
    args = parser.parse_args(argv)
    versions = {"new": SOURCES, "baseline": args.baseline.resolve()}
    times: dict[tuple[str, str, str], list[float]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(versions) if r % 2 == 0 else list(reversed(versions))
            for job in args.jobs:
                for version in order:
                    got = run_job(job, versions[version], args.repeats, Path(tmp) / f"{job}-{version}.json")
                    for name, values in got.items():
                        times.setdefault((job, name, version), []).extend(values)
                    print(f"round {r + 1}: {job} on {version}: " +
                          ", ".join(f"{n} {statistics.median(v):.3f} s" for n, v in got.items()), flush=True)
    print()
    header = f"{'contender':<32} {'new s':>8} {'baseline s':>11} {'new / baseline':>15}"
    print(header)
    print("-" * len(header))
    for job in args.jobs:
        for name, label in JOBS[job][1].items():
            if (job, name, "new") not in times:
                continue
            new, old = (statistics.median(times[(job, name, v)]) for v in ("new", "baseline"))
            print(f"{label:<32} {new:>8.3f} {old:>11.3f} {new / old:>14.3f}x")
    print(f"\n{args.rounds} rounds x {args.repeats} repeats per job and version, medians; "
          f"benchmark time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
