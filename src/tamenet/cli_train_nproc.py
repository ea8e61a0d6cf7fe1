"""`tamenet train --nproc N` and `tamenet train` under torchrun: the launch and each process's start.

`launch` (the command's own process) checks N against the machine before torch loads, fixes the run folder
once for every process and re-runs the command under torchrun (`tamenet.dist.launch.relaunch`). `join_job`
(each process torchrun started) joins the job's process group within ``--dist-timeout`` seconds, each process on
its own GPU when training on GPUs. See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .dist.launch import CPP_LOG_LEVEL


def _device_name(args: argparse.Namespace, light: Any) -> str:
    """The device the job trains on, from --device, else the recipe (auto when resuming without --device)."""
    if getattr(args, "device", None):
        return args.device
    return light.train.device if light is not None else "auto"


def child_argv(args: argparse.Namespace, out: Path | None) -> list[str]:
    """The `tamenet train ...` arguments every process of the job runs (no --nproc; the run folder fixed)."""
    argv = ["train", *([args.recipe] if args.recipe else [])]
    for override in args.overrides:
        argv += ["--set", override]
    if args.resume:
        argv += ["--resume", args.resume]
    elif out is not None:
        argv += ["--out", str(out)]
    for flag, value in (("--device", args.device), ("--ensemble", args.ensemble), ("--dist-timeout", args.dist_timeout)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, on in (("--keep-last", args.keep_last), ("--no-report", args.no_report)) if on]
    return argv


def launch(args: argparse.Namespace, out: Path | None, light: Any) -> int:
    """Check --nproc (before torch loads), then run the job on that many processes; its exit code."""
    from .dist.group import ranks_from_env
    from .dist.launch import DistributedError, check_nproc, gpu_count, relaunch

    if ranks_from_env() is not None:
        raise DistributedError("--nproc: this process is already one of a torchrun job; expected either torchrun "
                               "or --nproc, not both")
    device = _device_name(args, light)
    check_nproc(args.nproc, device=device, gpus=gpu_count() if device == "cuda" else 0)
    return relaunch(args.nproc, child_argv(args, out))


def join_job(ranks: Any, args: argparse.Namespace, light: Any) -> None:
    """Join the torchrun job this process belongs to (one line after --dist-timeout seconds, never a hang)."""
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", CPP_LOG_LEVEL)  # read when torch loads, just below
    import torch

    from .dist.group import DEFAULT_TIMEOUT_S, join

    device = _device_name(args, light)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(ranks.local_rank)  # one GPU per process
    timeout = args.dist_timeout if getattr(args, "dist_timeout", None) is not None else DEFAULT_TIMEOUT_S
    join(ranks, device, timeout)
