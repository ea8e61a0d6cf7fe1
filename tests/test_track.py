"""Run directories: atomic writes, metrics round trip, TensorBoard, checkpoints, curves, tables."""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tamenet.track import (
    RunDir,
    RunDirExistsError,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    format_table,
    plot_curves,
    read_metrics,
    read_status,
    to_jsonable,
)
from tamenet.track import atomic as atomic_module

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _epoch_rows(epoch: int, members: int) -> list[dict]:
    rows = []
    for m in range(members):
        rows.append({
            "epoch": epoch,
            "member": m,
            "train_loss": 1.0 / (epoch + 1) / (m + 1),
            "val_loss": 1.2 / (epoch + 1) / (m + 1) + 0.01 * epoch,
            "train_accuracy": 1 - 0.5 / (epoch + 1),
            "val_accuracy": 0.9 - 0.4 / (epoch + 1) - 0.003 * m,
            "lr": 0.1 * 0.9 ** epoch,
        })
    return rows


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]  # IHDR chunk CRC
    return width, height


def _all_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _all_files(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("writer", ["bytes", "text", "json", "torch"])
def test_crash_during_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch, writer) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old content")

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(atomic_module.os, "replace", crash)
    write = {
        "bytes": lambda: atomic_write_bytes(target, b"new content"),
        "text": lambda: atomic_write_text(target, "new content"),
        "json": lambda: atomic_write_json(target, {"new": 1}),
        "torch": lambda: atomic_torch_save(target, {"w": torch.ones(3)}),
    }[writer]
    with pytest.raises(OSError, match="simulated crash"):
        write()
    assert target.read_bytes() == b"old content"
    assert _all_files(tmp_path) == ["state.bin"]  # the temp file was cleaned up


def test_crash_while_writing_keeps_old_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "ckpt.pt"
    atomic_torch_save(target, {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save(target, {"epoch": 2, "bad": Unpicklable()})
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert _all_files(tmp_path) == ["ckpt.pt"]


def test_atomic_write_bytes_rejects_str(tmp_path) -> None:
    with pytest.raises(TypeError, match="expected bytes, received str"):
        atomic_write_bytes(tmp_path / "x", "text")  # type: ignore[arg-type]


def test_atomic_write_json_converts_numpy_and_torch(tmp_path) -> None:
    obj = {
        "b": np.float32(0.5),
        "a": np.int64(3),
        "arr": np.arange(3),
        "t": torch.tensor([[1.0, 2.0]]),
        "scalar": torch.tensor(7),
        "flag": np.bool_(True),
        "path": Path("runs") / "x",
        "tuple": (1, 2),
        1: "int key",
    }
    path = tmp_path / "o.json"
    atomic_write_json(path, obj)
    text = path.read_text()
    loaded = json.loads(text)
    assert list(loaded) == ["b", "a", "arr", "t", "scalar", "flag", "path", "tuple", "1"]  # not sorted
    assert loaded == {"b": 0.5, "a": 3, "arr": [0, 1, 2], "t": [[1.0, 2.0]], "scalar": 7, "flag": True,
                      "path": os.path.join("runs", "x"), "tuple": [1, 2], "1": "int key"}
    assert text.startswith('{\n  "b"')  # indent=2
    assert to_jsonable(np.float64(1.25)) == 1.25 and type(to_jsonable(np.float64(1.25))) is float


def test_to_jsonable_names_unknown_type() -> None:
    with pytest.raises(TypeError, match="received object"):
        to_jsonable({"x": object()})


# ---------------------------------------------------------------- run directory


def test_rundir_creates_folder_and_running_status(tmp_path) -> None:
    run = RunDir(tmp_path / "deep" / "run1", tensorboard=False)
    assert run.path.is_dir()
    status = read_status(run.path)
    assert status["state"] == "running"
    assert status["pid"] == os.getpid()
    assert "started" in status and "ended" not in status
    run.finish("finished")


def test_rundir_refuses_non_empty_folder(tmp_path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(RunDirExistsError, match="taken") as info:
        RunDir(folder, tensorboard=False)
    assert str(folder) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileExistsError)
    assert (folder / "metrics.csv").read_text() == "epoch\n1\n"  # untouched

    RunDir(tmp_path / "empty_ok", tensorboard=False)  # a fresh path is fine
    (tmp_path / "empty").mkdir()
    RunDir(tmp_path / "empty", tensorboard=False)  # an existing empty folder is fine
    run = RunDir(folder, tensorboard=False, exist_ok=True)
    assert read_status(run.path)["state"] == "running"


def test_rundir_refuses_a_file_path(tmp_path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        RunDir(file, tensorboard=False)


def test_metrics_csv_round_trip(tmp_path) -> None:
    run = RunDir(tmp_path / "run", tensorboard=False)
    for epoch in range(1, 5):
        run.log_epoch(_epoch_rows(epoch, members=3))
        # the file on disk always holds every row so far
        assert read_metrics(run.path / "metrics.csv") == run.rows
    back = read_metrics(run.path)
    assert len(back) == 12
    assert back == run.rows
    assert all(type(row["epoch"]) is int and type(row["member"]) is int for row in back)
    assert all(type(row["val_loss"]) is float for row in back)
    header = (run.path / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,member,train_loss,val_loss,train_accuracy,val_accuracy,lr"
    assert _all_files(run.path) == [".lock", "metrics.csv", "status.json"]  # .lock: the run is still being written


def test_log_epoch_converts_tensors_and_keeps_none_and_nan(tmp_path) -> None:
    run = RunDir(tmp_path / "run", tensorboard=False)
    run.log_epoch([{"epoch": np.int64(1), "train_loss": torch.tensor(0.25), "val_loss": None, "note": "warmup"}])
    run.log_epoch([{"epoch": 2, "train_loss": float("nan"), "val_loss": np.float32(0.5), "note": "main"}])
    back = read_metrics(run.path)
    assert back[0] == {"epoch": 1, "train_loss": 0.25, "val_loss": None, "note": "warmup"}
    assert back[1]["epoch"] == 2 and math.isnan(back[1]["train_loss"]) and back[1]["val_loss"] == 0.5


def test_log_epoch_rejects_bad_rows(tmp_path) -> None:
    run = RunDir(tmp_path / "run", tensorboard=False)
    with pytest.raises(TypeError, match="single dict"):
        run.log_epoch({"epoch": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'epoch'"):
        run.log_epoch([{"loss": 1.0}])
    run.log_epoch([{"epoch": 1, "loss": 1.0}])
    with pytest.raises(ValueError, match="same keys"):
        run.log_epoch([{"epoch": 2, "other": 1.0}])
    assert len(run.rows) == 1


def test_resume_into_existing_run_keeps_chosen_rows(tmp_path) -> None:
    first = RunDir(tmp_path / "run", tensorboard=False)
    for epoch in range(4):
        first.log_epoch(_epoch_rows(epoch, members=2))
    first.save_checkpoint("last", {"epoch": 2})
    # killed here: status stays "running"; resume from the checkpoint saved at epoch 2
    assert read_status(first.path)["state"] == "running"
    run = RunDir(tmp_path / "run", tensorboard=False, exist_ok=True)
    run.rows = [r for r in read_metrics(run.path) if r["epoch"] <= 2]
    run.log_epoch(_epoch_rows(3, members=2))
    back = read_metrics(run.path)
    assert [(r["epoch"], r["member"]) for r in back] == [(e, m) for e in range(4) for m in range(2)]
    assert back == first.rows


def test_tensorboard_scalars_per_member(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RunDir(tmp_path / "run")
    for epoch in range(3):
        run.log_epoch(_epoch_rows(epoch, members=2))
    run.finish("finished")
    tb = run.path / "tb"
    assert any(p.name.startswith("events.out.tfevents") for p in tb.iterdir())
    acc = EventAccumulator(str(tb))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val_loss/member_0", "val_loss/member_1", "lr/member_0", "train_accuracy/member_1"} <= tags
    assert not any(tag.startswith(("epoch", "member")) for tag in tags)
    events = acc.Scalars("val_loss/member_1")
    assert [e.step for e in events] == [0, 1, 2]
    expected = [row["val_loss"] for row in run.rows if row["member"] == 1]
    assert [e.value for e in events] == pytest.approx(expected, rel=1e-6)


def test_tensorboard_single_member_uses_plain_tags(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RunDir(tmp_path / "run")
    run.log_epoch([{"epoch": 5, "member": 0, "train_loss": 0.75, "val_rmse": 2.5}])
    run.log_epoch([{"epoch": 6, "member": 0, "train_loss": 0.5, "val_rmse": 2.0}])
    # flushed after each epoch: readable before finish
    acc = EventAccumulator(str(run.path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"train_loss", "val_rmse"}
    assert [(e.step, e.value) for e in acc.Scalars("val_rmse")] == [(5, 2.5), (6, 2.0)]
    run.finish("stopped")


def test_write_recipe_and_json(tmp_path) -> None:
    run = RunDir(tmp_path / "run", tensorboard=False)
    recipe = {"seed": [0, 1], "model": {"widths": [64, 32], "kind": "mlp"}, "data": {"name": "digits"}}
    run.write_recipe(recipe)
    text = (run.path / "recipe.yaml").read_text()
    assert text.index("seed") < text.index("model") < text.index("data")  # not sorted
    assert yaml.safe_load(text) == recipe
    run.write_json("summary.json", {"best_epoch": np.int64(3), "val_loss": torch.tensor(0.125)})
    run.write_json("extra", {"a": 1})
    assert json.loads((run.path / "summary.json").read_text()) == {"best_epoch": 3, "val_loss": 0.125}
    assert json.loads((run.path / "extra.json").read_text()) == {"a": 1}
    with pytest.raises(ValueError, match="plain file name"):
        run.write_json("../escape.json", {})


def test_checkpoint_round_trip(tmp_path) -> None:
    run = RunDir(tmp_path / "run", tensorboard=False)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    payload = {"epoch": 7, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "best": [0.5, 0.25]}
    path = run.save_checkpoint("last", payload)
    assert path == run.path / "last.pt"
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 7 and loaded["best"] == [0.5, 0.25]
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded["model"][key], tensor)
    fresh = torch.nn.Linear(4, 3)
    fresh.load_state_dict(loaded["model"])
    assert torch.equal(fresh.weight, model.weight)
    # overwriting keeps a single file
    run.save_checkpoint("last", {**payload, "epoch": 8})
    assert torch.load(path, weights_only=True)["epoch"] == 8
    assert _all_files(run.path) == [".lock", "last.pt", "status.json"]  # .lock: the run is still being written


def test_finish_writes_state_and_is_idempotent(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    run.log_epoch([{"epoch": 1, "val_loss": 0.5}])
    run.finish("stopped", message="early stopping at epoch 1", best_epoch=np.int64(1))
    status = read_status(run.path)
    assert status["state"] == "stopped"
    assert status["message"] == "early stopping at epoch 1" and status["best_epoch"] == 1
    assert "ended" in status and "started" in status
    run.finish("failed", message="second call")  # ignored
    assert read_status(run.path) == status
    assert run.state == "stopped"
    with pytest.raises(RuntimeError, match="already 'stopped'"):
        run.log_epoch([{"epoch": 2, "val_loss": 0.4}])
    with pytest.raises(ValueError, match="expected one of"):
        run.finish("done")


def test_context_manager_marks_failures(tmp_path) -> None:
    with pytest.raises(ZeroDivisionError):
        with RunDir(tmp_path / "bad", tensorboard=False):
            1 / 0
    status = read_status(tmp_path / "bad")
    assert status["state"] == "failed" and "ZeroDivisionError" in status["message"]
    with RunDir(tmp_path / "good", tensorboard=False) as run:
        run.log_epoch([{"epoch": 0, "val_loss": 1.0}])
    assert read_status(tmp_path / "good")["state"] == "finished"


_WRITER_CHILD = """
import sys, torch
from pathlib import Path
from tamenet.track import RunDir
run = RunDir(Path(sys.argv[1]), tensorboard=False)
epoch = 0
while True:
    run.log_epoch([{"epoch": epoch, "member": m, "val_loss": 1.0 / (epoch + 1)} for m in range(3)])
    run.save_checkpoint("last", {"epoch": epoch, "w": torch.full((20_000,), float(epoch))})
    run.write_json("summary.json", {"epoch": epoch, "pad": "x" * 50_000})
    if epoch == 5:
        Path(sys.argv[2]).write_text("ready")
    epoch += 1
"""


def test_killed_process_leaves_consistent_run_dir(tmp_path) -> None:
    import subprocess
    import sys
    import time

    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", _WRITER_CHILD, str(tmp_path / "run"), str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "the writer process died on its own"
            assert time.monotonic() < deadline, "the writer process never got going"
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        child.kill()  # SIGKILL: no cleanup, no finally blocks
        child.wait()
    run = tmp_path / "run"
    rows = read_metrics(run)
    assert len(rows) >= 18 and len(rows) % 3 == 0  # whole epochs only
    assert [r["epoch"] for r in rows] == [e for e in range(len(rows) // 3) for _ in range(3)]
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert torch.equal(checkpoint["w"], torch.full((20_000,), float(checkpoint["epoch"])))
    assert json.loads((run / "summary.json").read_text())["epoch"] >= 5
    assert read_status(run)["state"] == "running"  # honest: nobody marked it ended
    assert len([p for p in run.iterdir() if p.name.endswith(".tmp")]) <= 1  # a kill mid-write may orphan one
    assert sorted(p.name for p in run.iterdir() if not p.name.endswith(".tmp")) == [
        ".lock", "last.pt", "metrics.csv", "status.json", "summary.json"]  # a stale lock: its process is gone


# ---------------------------------------------------------------- plots and tables


def test_plot_curves_writes_png(tmp_path) -> None:
    rows = [row for epoch in range(20) for row in _epoch_rows(epoch, members=3)]
    path = tmp_path / "curves.png"
    plot_curves(rows, path, metric="accuracy", best_epochs=[5, 9, 12], title="digits, 3 members")
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width > 400 and height > 200
    assert len(data) > 20_000
    assert _all_files(tmp_path) == ["curves.png"]


def test_plot_curves_single_member_val_only_metric_and_linear_loss(tmp_path) -> None:
    rows = [{"epoch": e, "train_loss": 1.0 - 0.1 * e, "val_loss": 0.9 - 0.1 * e, "val_rmse": 3.0 - 0.2 * e}
            for e in range(10)]  # losses reach <= 0: linear axis; no train_rmse: val only; no member column
    path = tmp_path / "c.png"
    plot_curves(rows, path, metric="rmse", best_epochs=[4])
    data = path.read_bytes()
    _png_size(data)
    assert len(data) > 5_000


def test_plot_curves_many_members_and_read_back_rows(tmp_path) -> None:
    run = RunDir(tmp_path / "run", tensorboard=False)
    for epoch in range(8):
        run.log_epoch(_epoch_rows(epoch, members=14))
    plot_curves(read_metrics(run.path), run.path / "curves.png", metric="accuracy", best_epochs=[3] * 14)
    _png_size((run.path / "curves.png").read_bytes())


def test_plot_curves_rejects_mistakes(tmp_path) -> None:
    rows = _epoch_rows(0, members=2)
    with pytest.raises(ValueError, match="val_rmse"):
        plot_curves(rows, tmp_path / "x.png", metric="rmse")
    with pytest.raises(ValueError, match="expected 2 epochs"):
        plot_curves(rows, tmp_path / "x.png", metric="accuracy", best_epochs=[1])
    with pytest.raises(ValueError, match="non-empty"):
        plot_curves([], tmp_path / "x.png", metric="accuracy")
    assert not (tmp_path / "x.png").exists()


def test_format_table() -> None:
    text = format_table(
        ["member", "l2", "val_loss", "kind"],
        [[0, 0.0, 0.123456789, "mlp"], [1, 1e-4, np.float32(12.5), "resnet"], [2, 0.01, None, "mlp"]],
        title="Summary",
    )
    lines = text.splitlines()
    assert lines[0] == "Summary"
    assert lines[1].split() == ["member", "l2", "val_loss", "kind"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    assert lines[3].split() == ["0", "0", "0.1235", "mlp"]
    assert lines[4].split() == ["1", "0.0001", "12.5", "resnet"]
    assert lines[5].split() == ["2", "0.01", "-", "mlp"]
    # numbers right-aligned, text left-aligned: all data lines align on the column ends
    ends = {line.index("0.1235") + len("0.1235") for line in lines[3:4]}
    assert ends == {lines[4].index("12.5") + len("12.5")}
    assert lines[3].index("mlp") == lines[4].index("resnet")
    with pytest.raises(ValueError, match="expected 4 cells"):
        format_table(["a", "b", "c", "d"], [[1, 2]])
