"""`--nproc N`: the same command, re-run under ``torchrun`` on this machine (PyTorch's own launcher).

``tamenet train RECIPE --nproc 2`` becomes ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m
tamenet train RECIPE``: torchrun starts N processes, sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT for each, and ends the job when one of them dies (its exit code and the failed rank on stderr). Across
machines, run torchrun yourself with ``--nnodes`` and ``--rdzv-endpoint`` (docs/scaling.md); `tamenet ... --nproc`
is the one-machine shortcut.

Pure functions, and torchrun's launcher imported inside `relaunch` only (the command checks its arguments before
torch loads).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from ..errors import UserError


CPP_LOG_LEVEL = "FATAL"
"""TORCH_CPP_LOG_LEVEL for the processes of a job: c10d's C++ logger would print pages of retries and stack traces
for a rendezvous that fails, before the one line that says what happened (read when torch loads)."""


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


def gpu_count() -> int:
    """The GPUs PyTorch sees (imports torch: call it only when the job trains on cuda)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


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

    torchrun's own launcher (`torch.distributed.run`, its elastic agent) runs in this process, so a rank that
    dies is reported in one line (`failure_line`) instead of torchrun's traceback and report: torchrun stops
    the others, and ``--resume RUN_DIR`` continues from the last checkpoint the main rank wrote. A rank that
    ended with a user error (exit code 2) has printed its own line; the job then ends with 2 and nothing more.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("OMP_NUM_THREADS", "1")  # one core per process (check_nproc); torchrun would say so too
    child_env.setdefault("TORCH_CPP_LOG_LEVEL", CPP_LOG_LEVEL)
    saved_env = dict(os.environ)
    elastic = logging.getLogger("torch.distributed.elastic")
    saved_level = elastic.level
    os.environ.clear()
    os.environ.update(child_env)  # the agent hands its environment to the processes it starts
    elastic.setLevel(logging.ERROR)  # its "sending SIGTERM to the others" warnings: the line below says it
    try:
        run(parse_args(torchrun_argv(nproc, argv)[3:]))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode in (1, 2, 130):  # diverged / a user error (its line printed) / interrupted
            return failure.exitcode
        print(failure_line(nproc, rank, failure.exitcode), file=sys.stderr)
        return 2
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        elastic.setLevel(saved_level)
    return 0


def failure_line(nproc: int, rank: int, exitcode: int) -> str:
    """One line for a rank of the job that died: which, how, and how to continue."""
    import signal

    if exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"failed with exit code {exitcode} (its traceback is above)"
    return (f"tamenet: rank {rank} of the {nproc}-process job {how}; torchrun stopped the other processes; "
            f"tamenet train --resume RUN_DIR continues a training run from its last checkpoint")
