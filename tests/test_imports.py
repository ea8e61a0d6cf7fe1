"""`import tamenet` is light, a prediction loads no model-selection or plotting library, and every
module of the package imports on its own in a fresh interpreter (no import circles)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import tamenet
from tamenet.api import fit

SRC = Path(tamenet.__file__).resolve().parent.parent
HEAVY = ("optuna", "sklearn.model_selection", "matplotlib")
"""Libraries that only training, model selection or drawing need."""


def _fresh(code: str, *, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with this checkout's sources first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def _loaded_after(code: str) -> list[str]:
    """The HEAVY modules in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = _fresh(probe)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("imports") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit({"data": {"name": "moons", "n_samples": 120}, "model": {"widths": [4]}, "train": {"epochs": 1},
             "track": {"tensorboard": False, "plots": False}, "seed": 0}, out=run)
    finally:
        torch.set_num_threads(threads)
    (run.parent / "rows.csv").write_text("x0,x1\n0.5,0.25\n-1,2\n")
    return run


def test_import_tamenet_loads_no_heavy_library():
    assert _loaded_after("import tamenet") == []


def test_import_tamenet_does_not_even_load_torch():
    assert _loaded_after("import tamenet, sys\nassert 'torch' not in sys.modules, 'torch was imported'") == []


def test_load_run_and_predict_load_no_heavy_library(tiny_run):
    code = ("import numpy as np\nimport tamenet\n"
            f"model = tamenet.load_run({str(tiny_run)!r})\n"
            "print(model.predict(np.zeros((3, 2)))['label'])")
    assert _loaded_after(code) == []


def test_the_predict_command_loads_no_heavy_library(tiny_run):
    rows = tiny_run.parent / "rows.csv"
    code = f"from tamenet.cli import main\nassert main(['predict', {str(tiny_run)!r}, '--input', {str(rows)!r}]) == 0"
    assert _loaded_after(code) == []


def test_every_public_name_still_imports():
    names = ", ".join(n for n in tamenet.__all__ if n != "__version__")
    code = (f"from tamenet import {names}\nimport tamenet\n"
            "assert all(getattr(tamenet, n) is not None for n in tamenet.__all__)\n"
            "assert set(tamenet.__all__) <= set(dir(tamenet))\n"
            "from tamenet import *\nassert callable(fit) and callable(search) and callable(load_run)\n"
            "assert tamenet.search.__module__ == 'tamenet.select.run'")
    done = _fresh(code)
    assert done.returncode == 0, done.stderr


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'tamenet' has no attribute 'fitt'"):
        tamenet.fitt  # noqa: B018
    with pytest.raises(ImportError):
        exec("from tamenet import fitt", {})


def _modules() -> list[str]:
    return ["tamenet", *sorted(m.name for m in pkgutil.walk_packages(tamenet.__path__, "tamenet."))]


def _import_alone(name: str) -> tuple[str, int, str]:
    done = _fresh(f"import importlib\nimportlib.import_module({name!r})")
    return name, done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def test_every_module_imports_alone_in_a_fresh_interpreter():
    modules = _modules()
    assert {"tamenet.api", "tamenet.cli", "tamenet.checkpoints", "tamenet.select.trials"} <= set(modules)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: the test stays short on a small machine
        results = list(pool.map(_import_alone, modules))
    failed = {name: err for name, code, err in results if code != 0}
    assert not failed, failed


