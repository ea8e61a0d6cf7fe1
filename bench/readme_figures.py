"""Regenerate the figures the README shows from the commands it shows, and (with --write) put them in README.md.

Each figure is a block of the README between ``<!-- figure: NAME -->`` and ``<!-- /figure -->``; this script
runs the block's command in a fresh temporary folder (`python -m tamenet ...`, this checkout's sources),
prints what it printed (progress lines left out, the run folder's time stamp as printed) and, with
``--write``, replaces the block. The machine may be shared with other jobs: times are printed as measured.

    .venv/bin/python bench/readme_figures.py                    # print every figure
    .venv/bin/python bench/readme_figures.py --only default-job,l2-population --write
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

FIGURES: dict[str, list[str]] = {
    "default-job": ["train"],
    "l2-population": ["train", "recipes/l2-population.yaml"],
    "ensemble": ["train", "--ensemble", "5"],
}
"""Figure name -> the `tamenet` arguments whose output it shows (the command the README gives beside it)."""


def run_figure(args: list[str]) -> str:
    """What `tamenet ARGS` prints, run in a fresh folder holding a copy of recipes/, without progress lines."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "recipes", Path(tmp) / "recipes")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        done = subprocess.run([sys.executable, "-m", "tamenet", *args], cwd=tmp, env=env, capture_output=True,
                              text=True)
    if done.returncode != 0:
        raise SystemExit(f"tamenet {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    lines = [line for line in done.stdout.splitlines() if not line.startswith("epoch ")]
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- figure: {re.escape(name)} -->\n```\n)(.*?)(```\n<!-- /figure -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no block <!-- figure: {name} --> ... <!-- /figure -->")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(3), text, count=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated figure names (default: all of {', '.join(FIGURES)})")
    parser.add_argument("--write", action="store_true", help="replace the figures' blocks in README.md")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise SystemExit(f"unknown figure {unknown[0]!r} (valid: {', '.join(FIGURES)})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (the machine may be shared)")
    text = README.read_text()
    for name in names:
        body = run_figure(FIGURES[name])
        print(f"--- {name}: tamenet {' '.join(FIGURES[name])}\n{body}")
        text = replace_block(text, name, body)
    if args.write:
        README.write_text(text)
        print("README.md updated")


if __name__ == "__main__":
    main()
