"""What the benchmarks record about the machine they ran on (imported by the bench_*.py scripts beside it)."""

from __future__ import annotations

import importlib
import os
import platform
from typing import Any

import numpy as np
import torch

import tamenet


def machine_info(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Cores, platform, thread counts and versions; `packages` adds the version of each one installed."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "numpy": np.__version__,
        "tamenet": tamenet.__version__,
    }
    for name in packages:
        try:
            info[name] = importlib.import_module(name).__version__
        except ImportError:
            pass
    return info
