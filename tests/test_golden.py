"""The refactor's proof: every golden run recorded on the code before it reproduces bit for bit on the CPU.

Each case (the contract cases and the default job over 3 seeds for 2 epochs, see `golden_cases.py`)
trains again; its metrics.csv must equal the recorded text and every saved tensor its recorded hash.
Cases that a later fix changes on purpose are listed in `CHANGED` with the test that replaces them.
"""

from __future__ import annotations

import json

import pytest

from golden_cases import GOLDEN_FILE, recipes, run_case

GOLDEN = json.loads(GOLDEN_FILE.read_text())

CHANGED: dict[str, str] = {
    # SGD with momentum 0.9: the L1 threshold is now lr * l1 / (1 - momentum), the lasso at the stated strength
    "penalty:l1_proximal": "tests/test_lasso.py::test_l1_linear_model_is_sklearn_lasso_for_every_optimizer",
}


def test_every_golden_case_is_still_defined():
    missing = set(GOLDEN) - set(recipes())
    assert not missing, f"golden cases no longer defined: {sorted(missing)}"


@pytest.mark.parametrize("case", sorted(set(GOLDEN) - set(CHANGED)))
def test_golden_run_reproduces_bit_for_bit(case):
    got = run_case(recipes()[case])
    want = GOLDEN[case]
    assert got["metrics"] == want["metrics"], f"{case}: metrics.csv differs"
    assert got["tensors"].keys() == want["tensors"].keys(), f"{case}: saved tensors differ in name"
    differ = [k for k in want["tensors"] if got["tensors"][k] != want["tensors"][k]]
    assert not differ, f"{case}: {len(differ)} saved tensors differ, e.g. {differ[:3]}"
