"""Checkpoints load safely (weights only) and a file that cannot be used fails in one line.

Each broken `model.pt` (missing, empty, truncated, random bytes, a torch file that is not tamenet's,
another format version) is tried through `load_run`, `tamenet predict` and `tamenet evaluate`;
each broken `last.pt` through `fit(resume=...)`.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import tamenet
from tamenet.api import fit
from tamenet.checkpoints import CHECKPOINT_FORMAT, CheckpointError, CheckpointMissingError, load_checkpoint
from tamenet.cli import main
from tamenet.trained import load_run

from test_select_cli import _one_line_error

SRC = Path(tamenet.__file__).resolve().parent
TINY = {
    "name": "tiny",
    "data": {"name": "moons", "n_samples": 120},
    "model": {"widths": [4]},
    "train": {"optimizer": "adam", "lr": 0.01, "epochs": 2},
    "track": {"tensorboard": False, "plots": False},
    "seed": 0,
}


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """A finished run directory of a tiny model, with model.pt and last.pt; copied before any test breaks it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("saved") / "run"
        fit(TINY, out=run)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture()
def run(saved_run, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the saved run in tmp_path (the working directory), with rows.csv to predict for."""
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "run"
    shutil.copytree(saved_run, copy)
    (tmp_path / "rows.csv").write_text("x0,x1\n0.5,0.25\n-1,2\n")
    return copy


# ------------------------------------------------------------------ ways to break a checkpoint


def _missing(file: Path) -> None:
    file.unlink()


def _empty(file: Path) -> None:
    file.write_bytes(b"")


def _truncated(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _random_bytes(file: Path) -> None:
    file.write_bytes(os.urandom(4096))


def _foreign_tensor(file: Path) -> None:
    torch.save(torch.ones(3), file)


def _foreign_dict(file: Path) -> None:
    torch.save({"weights": torch.ones(3), "epoch": 1}, file)


def _other_format(file: Path) -> None:
    payload = torch.load(file, weights_only=True)
    payload.update(format=CHECKPOINT_FORMAT + 1, tamenet_version="9.9.9")
    torch.save(payload, file)


BREAKS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "missing": (_missing, ("no trained model at", "model.pt")),
    "empty": (_empty, ("is empty (0 bytes)",)),
    "truncated": (_truncated, ("cannot be read as a checkpoint", "truncated or corrupted")),
    "random-bytes": (_random_bytes, ("cannot be read as a checkpoint", "4096 bytes")),
    "foreign-tensor": (_foreign_tensor, ("is not a tamenet checkpoint", "holds a Tensor")),
    "foreign-dict": (_foreign_dict, ("is not a tamenet checkpoint", "no 'format' entry", "weights, epoch")),
    "other-format": (_other_format, (f"checkpoint format {CHECKPOINT_FORMAT + 1}", "tamenet 9.9.9",
                                     f"expects format {CHECKPOINT_FORMAT}")),
}


# ------------------------------------------------------------------ model.pt


@pytest.mark.parametrize("case", list(BREAKS))
def test_broken_model_pt_is_refused_by_load_run(run, case):
    breaks, needles = BREAKS[case]
    breaks(run / "model.pt")
    with pytest.raises(CheckpointError) as caught:
        load_run(run)
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("case", list(BREAKS))
def test_broken_model_pt_ends_predict_in_one_line(run, capsys, case):
    breaks, needles = BREAKS[case]
    breaks(run / "model.pt")
    _one_line_error(capsys, ["predict", "run", "--input", "rows.csv"], *needles)


@pytest.mark.parametrize("case", list(BREAKS))
def test_broken_model_pt_ends_evaluate_in_one_line(run, capsys, case):
    breaks, needles = BREAKS[case]
    breaks(run / "model.pt")
    _one_line_error(capsys, ["evaluate", "run"], *needles)


def test_a_missing_checkpoint_is_still_a_file_not_found_error(run):
    (run / "model.pt").unlink()
    with pytest.raises(FileNotFoundError):
        load_run(run)
    assert issubclass(CheckpointMissingError, CheckpointError) and issubclass(CheckpointError, ValueError)


def test_a_directory_in_place_of_the_file(run):
    (run / "model.pt").unlink()
    (run / "model.pt").mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        load_run(run)


def test_an_entry_of_the_wrong_type_is_named(run):
    payload = torch.load(run / "model.pt", weights_only=True)
    payload["n_in"] = "two"
    torch.save(payload, run / "model.pt")
    with pytest.raises(CheckpointError, match="entry 'n_in' is of type str, expected int"):
        load_run(run)


def test_weights_that_do_not_fit_the_recipe(run):
    payload = torch.load(run / "model.pt", weights_only=True)
    payload["state_dict"] = {k: torch.zeros(v.shape[0], 1) for k, v in payload["state_dict"].items()}
    torch.save(payload, run / "model.pt")
    with pytest.raises(CheckpointError, match="the saved weights do not fit the model its recipe builds"):
        load_run(run)


class _RunsCode:
    """An object whose unpickling would run code: touch a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_payload_with_code_is_refused_without_running_it(run, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    payload = torch.load(run / "model.pt", weights_only=True)
    payload["extra"] = _RunsCode(marker)
    torch.save(payload, run / "model.pt")
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors and plain containers"):
        load_run(run)
    _one_line_error(capsys, ["predict", "run", "--input", "rows.csv"], "is not a tamenet checkpoint")
    assert not marker.exists()


def test_the_saved_payload_passes_the_check_and_loads(run):
    payload = load_checkpoint(run / "model.pt", kind="model")
    assert payload["format"] == CHECKPOINT_FORMAT
    resume = load_checkpoint(run / "last.pt", kind="resume")
    assert resume["format"] == CHECKPOINT_FORMAT and set(resume) >= {"recipe", "trainer"}
    assert load_run(run).predict(torch.zeros(3, 2).numpy())["label"].shape == (3,)


def test_unknown_kind_is_refused(run):
    with pytest.raises(ValueError, match="expected kind 'model' or 'resume', got 'best'"):
        load_checkpoint(run / "model.pt", kind="best")


def test_predict_in_a_real_process_prints_one_line_and_no_traceback(run):
    _truncated(run / "model.pt")
    env = {**os.environ, "PYTHONPATH": str(SRC.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "tamenet", "predict", "run", "--input", "rows.csv"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("tamenet predict: error: ") and "truncated or corrupted" in done.stderr


# ------------------------------------------------------------------ last.pt and fit(resume=...)


RESUME_BREAKS = {k: v for k, v in BREAKS.items() if k not in {"missing", "foreign-dict", "other-format"}}
RESUME_BREAKS["missing"] = (_missing, ("cannot resume: no checkpoint", "last.pt"))
RESUME_BREAKS["foreign-dict"] = (_foreign_dict, ("is not a tamenet checkpoint", "lacks the entries recipe, trainer"))
RESUME_BREAKS["other-format"] = BREAKS["other-format"]


@pytest.mark.parametrize("case", list(RESUME_BREAKS))
def test_broken_last_pt_is_refused_by_resume(run, case):
    breaks, needles = RESUME_BREAKS[case]
    breaks(run / "last.pt")
    with pytest.raises(CheckpointError) as caught:
        fit(resume=run, overrides=["train.epochs=3"])
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_broken_last_pt_ends_train_resume_in_one_line(run, capsys):
    _random_bytes(run / "last.pt")
    _one_line_error(capsys, ["train", "--resume", "run", "--set", "train.epochs=3"], "cannot be read as a checkpoint")


def test_last_pt_written_before_it_carried_a_format_still_resumes(run):
    payload = torch.load(run / "last.pt", weights_only=True)
    legacy = {"recipe": payload["recipe"], "trainer": payload["trainer"]}  # what last.pt held before
    torch.save(legacy, run / "last.pt")
    result = fit(resume=run, overrides=["train.epochs=3"])
    assert result.summary["epochs_run"] == 3


# ------------------------------------------------------------------ every load is weights-only


def test_every_torch_load_in_the_package_is_weights_only():
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flags = {k.arg: k.value for k in node.keywords}
                safe = isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True
                calls.append((path.relative_to(SRC).as_posix(), node.lineno, safe))
    assert calls, "expected the checkpoint reader's torch.load"
    assert all(safe for _, _, safe in calls), [c for c in calls if not c[2]]
    assert {file for file, _, _ in calls} == {"checkpoints.py"}  # the one reader every load goes through


def test_a_module_file_may_hold_only_the_named_packages_modules(tmp_path):
    """`read_weights_only(modules_of=...)` (tamenet shrink's whole-module files): torch.nn's modules load; a class
    from anywhere else is refused by name before it is built."""
    import argparse

    from tamenet.checkpoints import read_weights_only

    good = tmp_path / "good.pt"
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    torch.save({"module": net}, good)
    back = read_weights_only(good, modules_of=("torch.nn.", "tamenet."))["module"]
    x = torch.randn(4, 3)
    assert torch.equal(back(x), net(x))
    with pytest.raises(CheckpointError, match="Python objects"):
        read_weights_only(good)  # without the allowance a module is refused as before
    bad = tmp_path / "bad.pt"
    torch.save({"module": net, "extra": argparse.Namespace(a=1)}, bad)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        read_weights_only(bad, modules_of=("torch.nn.", "tamenet."))
