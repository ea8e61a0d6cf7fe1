"""`--nproc N`: the same command, re-run under ``torchrun`` on this machine (PyTorch's own launcher).

``tamenet train RECIPE --nproc 2`` becomes ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m
tamenet train RECIPE``: torchrun starts N processes, sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT for each, and ends the job when one of them dies (its exit code and the failed rank on stderr). Across
machines, run torchrun yourself with ``--nnodes`` and ``--rdzv-endpoint`` (docs/scaling.md); `tamenet ... --nproc`
is the one-machine shortcut.

Pure functions and one subprocess call; no torch import (the command checks its arguments before torch loads).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

from ..errors import UserError


class DistributedError(UserError):
    """A distributed job that cannot start or that lost a process: one line, exit code 2."""


def available_cores() -> int:
    """The CPU cores this process may use (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def check_nproc(nproc: int, *, device: str = "cpu", gpus: int = 0) -> int:
    """`nproc` if this machine can run that many processes of the job, else a one-line `DistributedError`.

    On the CPU (gloo) each process needs a core of its own: more processes than cores only time-slice and, with
    torch's threads, run many times slower. On GPUs (NCCL) each process needs a device of its own.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise DistributedError(f"--nproc: expected a whole number of processes >= 1, got {nproc!r}")
    if device == "cuda":
        if nproc > gpus:
            raise DistributedError(f"--nproc {nproc}: one process per GPU, and this machine has {gpus} GPU(s)")
        return nproc
    cores = available_cores()
    if nproc > cores:
        raise DistributedError(f"--nproc {nproc}: one process per CPU core, and this machine has {cores} core(s) "
                               f"available; expected --nproc 1 to {cores}")
    return nproc


def without_nproc(argv: Sequence[str]) -> list[str]:
    """`argv` with its ``--nproc N`` / ``--nproc=N`` removed (the processes torchrun starts must not relaunch)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_argv(nproc: int, argv: Sequence[str], *, python: str | None = None) -> list[str]:
    """The command line that runs ``tamenet ARGV`` on `nproc` processes of this machine under torchrun."""
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "tamenet", *without_nproc(argv)]


def relaunch(nproc: int, argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Run ``tamenet ARGV`` on `nproc` processes and wait; the job's exit code (0 when every rank ended well).

    torchrun prints which rank failed and how; a rank that dies ends the whole job (torchrun stops the others),
    and ``--resume RUN_DIR`` continues from the last checkpoint the main rank wrote.
    """
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("OMP_NUM_THREADS", "1")  # one core per process (check_nproc); torchrun would say so too
    result = subprocess.run(torchrun_argv(nproc, argv), env=child_env, check=False)
    if result.returncode not in (0, 1, 2, 130):
        print(f"tamenet: a process of the {nproc}-process job failed (exit code {result.returncode}); see the "
              f"lines above for the rank; --resume RUN_DIR continues a training run from its last checkpoint",
              file=sys.stderr)
        return 2
    return result.returncode
