"""`tamenet.blas`: `import tamenet` puts MKL in its strict reproducible mode before the first matrix product, so a
member's products do not depend on the population around it (the contract: member m == its separate run)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

CHUNK_CHECK = """
import torch
torch.manual_seed(0)
x, w, b = torch.randn(18, 37, 64), torch.randn(18, 64, 10), torch.randn(18, 10)
whole = torch.baddbmm(b.unsqueeze(1), x, w)
chunks = [(9, 18), (3, 5), (5, 12), (0, 9)]
print(all(torch.equal(torch.baddbmm(b[i:j].unsqueeze(1), x[i:j], w[i:j]), whole[i:j]) for i, j in chunks))
"""
"""The plain population product of a 37-row batch, 64 inputs, 10 outputs: members 9-17 alone against the same
members among 18 (on this project's machine they differed in MKL's default mode)."""


def _python(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    done = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1",
                                                               **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_import_sets_the_strict_mode_and_keeps_a_users_own():
    assert _python("import tamenet, os; print(os.environ['MKL_CBWR'])") == "AUTO,STRICT"
    assert _python("import tamenet, os; print(os.environ['MKL_CBWR'])", MKL_CBWR="AVX2") == "AVX2"


def test_after_import_a_chunk_of_members_gets_the_populations_products_bit_for_bit():
    assert _python("import tamenet\n" + CHUNK_CHECK) == "True"
    # the control: a product before tamenet's import fixes MKL's default mode for the process
    control = _python("import torch; torch.mm(torch.ones(64, 64), torch.ones(64, 64))\nimport tamenet\n" + CHUNK_CHECK)
    if control == "True":
        warnings.warn("MKL's default mode on this CPU also gave position-independent products: the control shows "
                      "nothing here (on this project's machine it differed)", stacklevel=1)
