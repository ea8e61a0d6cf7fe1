"""`tamenet report DIR`: write DIR/report.html for a run, cross-validation or search directory.

    tamenet report runs/digits-default-20261123-124305

`train`, `cv` and `search` write the same report at their end unless given `--no-report` (`after_job`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    """The `report` subcommand (argparse only: nothing heavy is imported here)."""
    report = sub.add_parser("report", help="write report.html (curves, overfitting onset, weights, search, "
                                           "calibration, what to try next) for a run, cv or search directory")
    report.add_argument("run_dir", help="a directory written by tamenet train, cv or search")
    report.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return report


def add_no_report(parser: argparse.ArgumentParser) -> None:
    """The `--no-report` option of train, cv and search."""
    parser.add_argument("--no-report", action="store_true", help="do not write report.html at the end")


def run(args: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(Path(args.run_dir))
    print(f"report: {path}")
    return 0


def after_job(args: argparse.Namespace, run_dir) -> None:
    """Write the job's report unless --no-report; a report that fails says so on stderr and leaves the job's files."""
    if getattr(args, "no_report", False) or run_dir is None:
        return
    from .report import write_report

    try:
        print(f"report: {write_report(Path(run_dir))}")
    except (ValueError, OSError, KeyError) as err:  # the job itself succeeded: its exit code stays
        print(f"tamenet {args.command}: report not written: {' '.join(str(err).split())}", file=sys.stderr)


__all__ = ["add_no_report", "add_parser", "after_job", "run"]
