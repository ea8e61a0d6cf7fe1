"""The code version a run records: the git commit of the source tree when there is one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import __version__


def code_version() -> str:
    """`<package version>+<commit>[-dirty]` from git when the package runs from a checkout, else the version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return __version__
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        )
        suffix = "-dirty" if dirty.stdout.strip() else ""
        return f"{__version__}+{commit.stdout.strip()}{suffix}"
    except (OSError, subprocess.SubprocessError):
        return __version__
