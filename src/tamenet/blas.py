"""Reproducible GEMMs: Intel MKL's strict conditional numerical reproducibility, so that member m's products do not
depend on the population around it.

PyTorch's CPU build multiplies with MKL. Its batched GEMM (`bmm`, `baddbmm`: every population layer) picks kernels
by a matrix's position in the batch and by the batch's size, and those kernels round differently: member 9 of a
population of 18 and member 0 of the chunk holding members 9-17 got products differing by about 1e-7 (a 37-row
batch, 64 inputs, 10 outputs), and a population of one (a single GEMM) differs again. Such differences break
"member m equals its separate run" and "a chunked search equals the unchunked one" bit for bit. MKL's strict mode
(`MKL_CBWR=AUTO,STRICT`) computes each matrix the same way wherever it sits; it measured as fast as the default
mode on this project's machine (bench/README.md, "The narrow output layer").

MKL reads the setting at its first call, so it must be set before the process's first matrix product; `import
tamenet` sets it (`use_strict_gemm`), unless the environment already names a mode, which is kept. Child processes
(torchrun's ranks) inherit it. Where PyTorch does not use MKL (ARM, macOS) the variable does nothing.
"""

from __future__ import annotations

import os

MKL_MODE = "AUTO,STRICT"
"""MKL_CBWR's value: the code path MKL picks for this CPU (AUTO), with each matrix computed position-independently."""


def use_strict_gemm() -> bool:
    """Set MKL_CBWR to MKL_MODE unless the environment already sets it; True when this call set it.

    Takes effect only if no matrix product has run in this process yet (MKL reads the variable once)."""
    if os.environ.get("MKL_CBWR"):
        return False
    os.environ["MKL_CBWR"] = MKL_MODE
    return True
