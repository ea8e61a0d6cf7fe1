"""Golden runs: the contract cases and the default job (3 seeds, 2 epochs), reduced to a digest.

The digest of a run is its `metrics.csv` as written and a SHA-256 of every tensor of its saved
state (`model.pt`'s state dict; `last.pt`'s model, optimizer state and best weights). Recorded on
the code before the core refactor (`python tests/golden_cases.py --record`, one thread), it must be
reproduced bit for bit on the CPU (`tests/test_golden.py`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

GOLDEN_FILE = Path(__file__).parent / "golden" / "golden.json"

DEFAULT_JOB = "default:3_seeds_2_epochs"


def recipes() -> dict[str, dict]:
    """Every golden case by name: the contract cases, and the default job over 3 seeds for 2 epochs."""
    from tamenet.config import set_key
    from tamenet.recipes import DEFAULT_RECIPE

    from test_contract import BASE, CASES

    out = {name: functools.reduce(lambda raw, change: set_key(raw, *change), changes.items(), BASE)
           for name, changes in CASES.items()}
    default = copy.deepcopy(DEFAULT_RECIPE)
    default["seed"] = [0, 1, 2]
    default["train"]["epochs"] = 2
    default["track"] = {"tensorboard": False, "plots": False, "checkpoint": True}
    out[DEFAULT_JOB] = default
    return out


def tensor_hash(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    return f"{t.dtype}:{list(t.shape)}:" + hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()[:32]


def _walk(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, torch.Tensor):
        out[prefix] = tensor_hash(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk(f"{prefix}[{i}]", v, out)


def digest_run(run_dir: Path) -> dict[str, Any]:
    """metrics.csv (as text) and a hash of every tensor the run saved."""
    model = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    tensors: dict[str, str] = {}
    _walk("model.pt", model["state_dict"], tensors)
    last = run_dir / "last.pt"
    if last.is_file():
        trainer = torch.load(last, map_location="cpu", weights_only=True)["trainer"]
        _walk("last.pt.model", trainer["model"], tensors)
        _walk("last.pt.optimizer", trainer["optimizer"]["state"], tensors)
        _walk("last.pt.best_state", trainer["best_state"], tensors)
    return {"metrics": (run_dir / "metrics.csv").read_text(), "tensors": tensors}


def run_case(raw: dict) -> dict[str, Any]:
    from tamenet.api import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fit(copy.deepcopy(raw), out=Path(tmp) / "run")
            return digest_run(Path(tmp) / "run")
    finally:
        torch.set_num_threads(threads)


def record() -> None:
    golden = {name: run_case(raw) for name, raw in sorted(recipes().items())}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(golden)} golden runs in {GOLDEN_FILE}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/golden_cases.py --record")
    record()
