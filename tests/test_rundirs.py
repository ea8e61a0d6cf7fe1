"""Run folders a person can live with: one writer at a time (a lock that a dead process does not keep), a run
whose process died shown as "crashed", `tamenet runs`, folder names after the recipe or data and model, and
the default job's dropout following model.widths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tamenet.cli import main
from tamenet.recipe_files import parse_recipe, run_name
from tamenet.track.lock import LOCK_NAME, RunLock, RunLockedError, host, run_state
from tamenet.track.rundir import RunDir

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _sleeper(folder: Path) -> subprocess.Popen:
    """Another process that opens a RunDir on `folder` and then waits (to be killed)."""
    code = (f"import sys, time\nfrom tamenet.track.rundir import RunDir\nRunDir({str(folder)!r}, tensorboard=False, "
            "exist_ok=True)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": SRC})
    assert child.stdout.readline().strip() == "ready"
    return child


def test_a_second_writer_is_refused_in_one_line_and_a_killed_writers_lock_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    child = _sleeper(folder)
    try:
        lock = json.loads((folder / LOCK_NAME).read_text())
        assert lock["pid"] == child.pid and lock["host"] == host() and lock["started"]
        with pytest.raises(RunLockedError, match=f"being written by process {child.pid}"):
            RunDir(folder, tensorboard=False, exist_ok=True)
        assert main(["train", "--resume", str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"process {child.pid}" in err[0] and "still being written" in err[0]
        assert run_state(folder)["state"] == "running"
    finally:
        child.kill()  # kill -9: no clean-up, the lock and "running" stay behind
        child.wait()
    assert (folder / LOCK_NAME).exists()
    state = run_state(folder)
    assert state["state"] == "crashed" and str(child.pid) in state["note"]
    run = RunDir(folder, tensorboard=False, exist_ok=True)  # the stale lock is taken over
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    run.finish("finished")
    assert not (folder / LOCK_NAME).exists()  # released when the run ends
    assert run_state(folder)["state"] == "finished"


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    # pid 1 runs, but it started long before this lock was taken: the lock's own process is gone
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": host(), "started": "2000-01-01T00:00:00+00:00"}))
    lock = RunLock(folder).acquire()
    assert lock.held and json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": host(), "started": "2999-01-01T00:00:00"}))
    RunLock(folder).acquire().release()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "2999-01-01T00:00:00"}))
    with pytest.raises(RunLockedError, match="host elsewhere.*cannot be checked"):
        RunLock(folder).acquire()


def test_evaluate_predict_and_runs_call_a_dead_running_run_crashed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: tiny\ndata: {name: moons, n_samples: 80}\nmodel: {widths: [4]}\ntrain: {epochs: 2}\n"
                      "track: {tensorboard: false, plots: false}\n")
    assert main(["train", str(recipe)]) == 0
    out = capsys.readouterr().out
    folder = Path(next(line for line in out.splitlines() if line.startswith("run directory: ")).split(": ", 1)[1])
    assert folder.parent == Path("runs") and folder.name.startswith("tiny-")  # named after the recipe
    assert not (folder / "last.pt").exists() and (folder / "model.pt").exists()  # no --keep-last
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "state": "running", "pid": _dead_pid()}))
    (tmp_path / "rows.csv").write_text("x0,x1\n0.5,0.2\n")
    assert main(["evaluate", str(folder)]) == 0
    assert "this run crashed" in capsys.readouterr().err
    assert main(["predict", str(folder), "--input", "rows.csv"]) == 0
    assert "this run crashed" in capsys.readouterr().err
    assert main(["runs"]) == 0
    listing = capsys.readouterr().out.splitlines()
    row = next(line for line in listing if line.startswith(folder.name))
    for word in ("crashed", "moons", "mlp 4", "2/2 epochs", "test accuracy"):
        assert word in row, (word, row)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert f"{size / 1000:.1f} kB" in row
    assert listing[-1].startswith("1 run, ")


def test_keep_last_keeps_the_resume_state(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {name: moons, n_samples: 80}\nmodel: {widths: [4]}\ntrain: {epochs: 2}\n"
                      "track: {tensorboard: false, plots: false}\n")
    assert main(["train", str(recipe), "--out", "kept", "--keep-last"]) == 0
    assert (tmp_path / "kept" / "last.pt").exists()
    assert main(["train", "--resume", "kept", "--set", "train.epochs=3"]) == 0
    assert "best epoch" in capsys.readouterr().out


@pytest.mark.parametrize("source, overrides, stem", [
    (None, [], "digits-default"),
    (None, ["data.name=mnist1d"], "mnist1d-mlp"),
    (None, ["model.kind=cnn"], "digits-cnn"),
    ({"data": {"name": "wine"}}, [], "wine-mlp"),
    ({"name": "my run/1", "data": {"name": "wine"}}, [], "my-run-1"),
])
def test_a_run_folder_is_named_after_the_recipe_else_its_data_and_model(source, overrides, stem):
    assert run_name(parse_recipe(source, overrides)) == stem
    assert run_name(parse_recipe(source, overrides), "cv") == f"{stem}-cv"


@pytest.mark.parametrize("widths", [[16], [32, 16, 8], []])
def test_the_default_dropout_follows_the_widths(widths):
    import torch

    from tamenet.models import build_model
    from tamenet.recipes import load_recipe

    recipe = load_recipe(None, [f"model.widths={widths}"])
    assert recipe.model.dropout == [0.2] + [0.5] * len(widths)
    model = build_model(recipe.model, n_in=64, n_out=10, seeds=[0])
    assert model(torch.zeros(3, 64)).shape[-1] == 10
    assert load_recipe(None, ["model.kind=cnn"]).model.dropout == 0.5
