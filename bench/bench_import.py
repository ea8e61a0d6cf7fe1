"""Import time of tamenet: how long a fresh interpreter takes to `import tamenet`, to be ready to predict, and
to start the command line, for this checkout's sources and (with ``--baseline SRC_DIR``) an older source tree.

Every timing is one fresh interpreter (``sys.executable -c ...``) with the measured source tree first on
``PYTHONPATH``; the child times the statement itself with ``time.perf_counter`` (interpreter start-up is
not counted) and reports which heavy libraries it loaded. Each variant runs once untimed first (the file
cache), then the repeats run round-robin (current, baseline, current, ...) so a machine that slows down
hits both alike; the table shows the median, the min-max spread and the ratio current / baseline. The
project's target: ``import tamenet`` in under half the time of the version before lazy imports.

    .venv/bin/python bench/bench_import.py                               # this checkout only, 7 repeats
    git worktree add ../tamenet-old HEAD~1                               # an older version's sources
    .venv/bin/python bench/bench_import.py --baseline ../tamenet-old/src --repeats 11

Writes the raw timings to ``bench/results/import.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CURRENT_SRC = HERE.parent / "src"
DEFAULT_OUT = HERE / "results" / "import.json"
TARGET_RATIO = 0.5

STATEMENTS = {
    "import tamenet": "import tamenet",
    "ready to predict": "import tamenet; tamenet.load_run",
    "command line": "from tamenet.cli import main",
}
"""Row label -> the statement a fresh interpreter times (`tamenet.load_run` imports what a prediction needs)."""

HEAVY = ("torch", "sklearn", "sklearn.model_selection", "scipy", "matplotlib", "optuna")
"""Libraries whose presence after the statement the table reports."""

PROBE = """import json, sys, time
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def time_once(src: Path, statement: str, threads: int) -> dict:
    """One fresh interpreter: the seconds `statement` took with `src` first on the path, and the heavy modules it loaded."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(statement=statement, heavy=HEAVY)],
                          capture_output=True, text=True, env=env, cwd=HERE, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{statement!r} failed with sources {src}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(variants: dict[str, Path], repeats: int, threads: int) -> dict[str, dict[str, list[dict]]]:
    """{variant: {row label: [one record per repeat]}}, after one untimed warm-up per variant and statement."""
    runs: dict[str, dict[str, list[dict]]] = {name: {label: [] for label in STATEMENTS} for name in variants}
    for src in variants.values():
        for statement in STATEMENTS.values():
            time_once(src, statement, threads)
    for _ in range(repeats):
        for label, statement in STATEMENTS.items():
            for name, src in variants.items():
                runs[name][label].append(time_once(src, statement, threads))
    return runs


def summary_rows(runs: dict[str, dict[str, list[dict]]]) -> tuple[list[str], list[list]]:
    """The table: per statement, each variant's median and spread (ms), the ratio and the heavy libraries loaded."""
    names = list(runs)
    header = ["statement"]
    for name in names:
        header += [f"{name} ms (median)", "min-max"]
    if len(names) == 2:
        header.append(f"{names[0]} / {names[1]}")
    header += [f"loaded ({name})" for name in names]
    rows = []
    for label in STATEMENTS:
        row: list = [label]
        medians = []
        for name in names:
            ms = [1000 * r["seconds"] for r in runs[name][label]]
            medians.append(statistics.median(ms))
            row += [round(medians[-1], 1), f"{min(ms):.0f}-{max(ms):.0f}"]
        if len(names) == 2:
            row.append(round(medians[0] / medians[1], 3))
        row += [", ".join(runs[name][label][-1]["loaded"]) or "-" for name in names]
        rows.append(row)
    return header, rows


def command_line(args: argparse.Namespace) -> str:
    """The command as recorded: the baseline's folder is named SRC_DIR, never by its path on this machine."""
    baseline = " --baseline SRC_DIR" if args.baseline is not None else ""
    return f"bench/bench_import.py{baseline} --repeats {args.repeats} --threads {args.threads}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, metavar="SRC_DIR",
                        help="an older version's source tree (the folder holding its tamenet/ package)")
    parser.add_argument("--repeats", type=int, default=7, help="fresh interpreters per statement and variant (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of the children (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats: expected at least 1, got {args.repeats}")
    variants = {"current": CURRENT_SRC}
    if args.baseline is not None:
        baseline = args.baseline.resolve()
        if not (baseline / "tamenet" / "__init__.py").is_file():
            raise SystemExit(f"--baseline: expected a source tree holding tamenet/__init__.py, got {baseline}")
        variants["baseline"] = baseline

    sys.path.insert(0, str(CURRENT_SRC))
    import torch

    from machine import machine_info
    from tamenet.track import format_table

    torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None  # other work on the machine shifts every figure
    runs = measure(variants, args.repeats, args.threads)
    header, rows = summary_rows(runs)
    info = machine_info()
    title = (f"import time in fresh interpreters: median of {args.repeats}, {args.threads} thread(s); "
             f"{info['cpu_affinity'] or info['cpu_count']} cores, {info['processor']}, Python {info['python']}, "
             f"torch {info['torch']}")
    table = format_table(header, rows, title=title)
    print(table)
    if load is not None:
        print(f"load average at the start: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)")
    if len(variants) == 2:
        ratio = rows[0][header.index("current / baseline")]
        verdict = "met" if ratio < TARGET_RATIO else "not met"
        print(f"target (import tamenet under {TARGET_RATIO:.0%} of the baseline's time): {verdict}, ratio {ratio:.3f}")

    result = {
        "command": command_line(args),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {**info, "load_average": load},
        "settings": {"repeats": args.repeats, "threads": args.threads, "variants": sorted(variants)},
        "statements": STATEMENTS,
        "table": table,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
