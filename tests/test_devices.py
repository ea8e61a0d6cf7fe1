"""`train.device`: everything of a run lives on one device; GPU cases run only where PyTorch sees a GPU."""

from __future__ import annotations

import copy

import pytest
import torch

from tamenet.api import fit
from tamenet.config import RecipeError
from tamenet.recipes import DEFAULT_RECIPE, load_recipe
from tamenet.train.loop import resolve_device

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
SMALL = {"data": {"name": "moons", "n_samples": 200}, "model": {"widths": [16], "dropout": 0.2, "norm": "batch"},
         "penalty": {"l2": [0.0, 1e-3]}, "train": {"batch_size": 32, "epochs": 3, "input_noise": [0.0, 0.1]},
         "track": QUIET, "seed": [0, 1]}
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to PyTorch")


def _devices(result) -> set[str]:
    return {t.device.type for t in [*result.model.parameters(), *result.model.buffers()]}


def test_auto_is_the_cpu_without_a_gpu_and_cpu_trains_exactly_as_auto_there():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: auto means cuda here")
    assert resolve_device("auto").type == "cpu"
    auto = fit(SMALL)
    cpu = fit({**SMALL, "train": {**SMALL["train"], "device": "cpu"}})
    assert auto.history == cpu.history
    assert _devices(cpu) == {"cpu"}


def test_cuda_without_a_gpu_is_one_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(RecipeError, match=r"train\.device: 'cuda' needs a GPU .*use 'auto' or 'cpu'"):
        fit({**SMALL, "train": {**SMALL["train"], "device": "cuda"}})


def test_an_unknown_device_names_the_valid_ones():
    with pytest.raises(RecipeError, match=r"train\.device: unknown value 'tpu' \(valid: auto, cpu, cuda\)"):
        load_recipe({"train": {"device": "tpu"}})


@needs_gpu
def test_on_the_gpu_member_m_equals_its_separate_run():
    gpu = {**SMALL, "train": {**SMALL["train"], "device": "cuda"}}
    population = fit(gpu)
    assert _devices(population) == {"cuda"}
    for m in range(2):
        alone = fit({**gpu, "penalty": {"l2": SMALL["penalty"]["l2"][m]}, "seed": m,
                     "train": {**gpu["train"], "input_noise": SMALL["train"]["input_noise"][m]}})
        mine = [(r["train_loss"], r["val_loss"]) for r in population.history if r["member"] == m]
        theirs = [(r["train_loss"], r["val_loss"]) for r in alone.history]
        assert mine == pytest.approx(theirs, rel=1e-4, abs=1e-5)


@needs_gpu
def test_the_default_job_trains_on_the_gpu(tmp_path):
    recipe = copy.deepcopy(DEFAULT_RECIPE)
    recipe["train"]["epochs"] = 3
    recipe["train"]["device"] = "cuda"
    result = fit(recipe, out=tmp_path / "run")
    assert _devices(result) == {"cuda"}
    assert result.summary["test"]["accuracy"] > 0.8


def test_the_command_lines_device_option_sets_train_device(capsys):
    from tamenet.cli import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["train", "--device", "cuda", "--set", "train.epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.device: 'cuda' needs a GPU" in err[0]
