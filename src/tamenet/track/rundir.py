"""A run directory: the files one training run leaves behind, each written atomically.

Layout::

    <run>/recipe.yaml     the recipe as run
    <run>/metrics.csv     one row per (epoch, member), rewritten whole after each epoch
    <run>/summary.json    final numbers (written by the training loop via `write_json`)
    <run>/status.json     {"state": "running" | "finished" | ..., "started", "ended", "pid", ...}
    <run>/<name>.pt       checkpoints
    <run>/curves.png      learning curves (`plot_curves`)
    <run>/tb/             TensorBoard event files
    <run>/.lock           the writing process (pid, host, start time) while it runs (`lock.py`)

A process killed at any moment leaves every file either at its previous or at its new content. One
process writes a folder at a time: a second `RunDir` on it while its writer lives is refused
(`RunLockedError`); a lock whose process is gone is taken over.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tamenet.track.atomic import atomic_torch_save, atomic_write_json, atomic_write_text, to_jsonable
from tamenet.track.lock import RunLock, host

__all__ = ["END_STATES", "RunDir", "RunDirExistsError", "check_run_folder", "read_metrics", "read_status"]

END_STATES = ("finished", "stopped", "interrupted", "failed")
"""The states `RunDir.finish` accepts; a live run is ``"running"``."""

_INT_COLUMNS = ("epoch", "member")


class RunDirExistsError(FileExistsError, ValueError):
    """The run folder already exists and is not empty (and `exist_ok` was not given)."""


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _check_file_name(name: Any, *, what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what}: expected a file name (str), received {type(name).__name__}")
    if not name or name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise ValueError(f"{what}: expected a plain file name inside the run folder, received {name!r}")
    return name


def check_run_folder(path: Path | str, *, what: str = "run folder") -> Path:
    """`path` as a Path when a run folder can be made there: refuses an existing file, and a path under a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what}: expected a folder (or a new path), received an existing file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what}: expected a path of folders, but {parent} is a file")
            break
    return path


def _scalar(value: Any) -> Any:
    """A metric cell as plain Python: tensors and numpy values become numbers."""
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")  # loaded by whoever made such values
    if torch is not None and isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric values: expected scalars, received a tensor of shape {tuple(value.shape)}")
        return value.item()
    if np is not None and isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"metric values: expected scalars, received an array of shape {value.shape}")
        return value.item()
    if np is not None and isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"metric values: expected numbers or str, received {type(value).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RunDir:
    """One run's folder: recipe.yaml, metrics.csv, summary.json, status.json, checkpoints, curves.png, tb/ (TensorBoard).

    Use as a context manager to mark the run ``"failed"`` / ``"interrupted"`` when an exception
    escapes, and ``"finished"`` on a clean exit (unless `finish` was already called).

    To resume into an existing folder (``exist_ok=True``), set `rows` to the rows to keep before the
    next `log_epoch`, e.g. ``run.rows = [r for r in read_metrics(run.path) if r["epoch"] <= saved_epoch]``:
    `log_epoch` rewrites metrics.csv from `rows`.
    """

    def __init__(self, path: Path | str, *, tensorboard: bool = True, exist_ok: bool = False) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a str or os.PathLike, received {type(path).__name__}")
        self.path: Path = check_run_folder(path, what=f"run folder {path}")
        if self.path.is_dir() and any(self.path.iterdir()) and not exist_ok:
            raise RunDirExistsError(
                f"run folder {self.path} already exists and is not empty; "
                "pick a new folder, empty it, or pass exist_ok=True to write into it"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(self.path).acquire()  # a second live writer is refused here
        self.rows: list[dict] = []
        self._columns: list[str] | None = None
        self._state = "running"
        self._status: dict[str, Any] = {"state": "running", "started": _now(), "pid": os.getpid(), "host": host()}
        self._writer: Any = None
        try:
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter  # imported here: slow, and only needed with TB

                self._writer = SummaryWriter(log_dir=str(self.path / "tb"))
            self.write_json("status.json", self._status)
        except BaseException:
            self.lock.release()
            raise

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, state={self._state!r}, rows={len(self.rows)})"

    @property
    def state(self) -> str:
        """``"running"`` until `finish` is called, then the state it was given."""
        return self._state

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    def write_recipe(self, recipe: dict) -> None:
        """Write recipe.yaml (keys in the given order), atomically."""
        plain = to_jsonable(recipe)
        if not isinstance(plain, dict):
            raise TypeError(f"recipe: expected a dict, received {type(recipe).__name__}")
        atomic_write_text(self.path / "recipe.yaml", yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))

    def write_json(self, name: str, obj: Any) -> None:
        """Write `<run>/<name>` as JSON atomically (``.json`` is added when `name` has no suffix)."""
        name = _check_file_name(name, what="name")
        if not Path(name).suffix:
            name += ".json"
        atomic_write_json(self.path / name, obj)

    def log_epoch(self, rows: list[dict]) -> None:
        """Record one epoch: one dict per member, each with an ``epoch`` key (and ``member`` when several).

        Rewrites metrics.csv atomically with every row so far and logs numeric values to TensorBoard
        (tag ``key`` for one member, ``key/member_<m>`` otherwise; step = epoch).
        """
        if self._state != "running":
            raise RuntimeError(f"log_epoch: expected a running run, but {self.path} is already {self._state!r}")
        if isinstance(rows, dict):
            raise TypeError("rows: expected a list of dicts (one per member), received a single dict; wrap it in [ ]")
        if not isinstance(rows, (list, tuple)) or not rows:
            raise ValueError(f"rows: expected a non-empty list of dicts (one per member), received {rows!r}")
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise TypeError(f"rows[{index}]: expected a dict, received {type(row).__name__}")
        columns = self._columns_so_far() or list(rows[0])
        clean: list[dict] = []
        for index, row in enumerate(rows):
            if "epoch" not in row:
                raise ValueError(f"rows[{index}]: expected an 'epoch' key, received keys {list(row)}")
            if set(row) != set(columns):
                raise ValueError(f"rows[{index}]: expected the same keys as earlier rows {columns}, received {list(row)}")
            clean.append({key: _scalar(row[key]) for key in columns})
        self._columns = columns
        self.rows.extend(clean)
        self._write_metrics()
        if self._writer is not None:
            self._write_tensorboard(clean)

    def _columns_so_far(self) -> list[str] | None:
        """The metrics.csv header: from the first logged row, or from `rows` when a resume replaced them."""
        if self._columns is None and self.rows:
            self._columns = list(self.rows[0])
        return self._columns

    def _write_metrics(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = self._columns_so_far() or []
        writer.writerow(columns)
        for row in self.rows:
            cells = [_scalar(row.get(key)) for key in columns]
            writer.writerow(["" if cell is None else cell for cell in cells])  # floats: shortest exact repr
        atomic_write_text(self.metrics_path, buffer.getvalue())

    def _write_tensorboard(self, rows: list[dict]) -> None:
        single = len(rows) == 1
        for index, row in enumerate(rows):
            member = row.get("member", index)
            step = int(row["epoch"])
            for key, value in row.items():
                if key in _INT_COLUMNS or not _is_number(value):
                    continue
                tag = key if single else f"{key}/member_{member}"
                self._writer.add_scalar(tag, float(value), global_step=step)
        self._writer.flush()

    def save_checkpoint(self, name: str, payload: dict) -> Path:
        """Save `payload` to ``<run>/<name>.pt`` atomically and return that path."""
        name = _check_file_name(name, what="name")
        if not isinstance(payload, dict):
            raise TypeError(f"payload: expected a dict (e.g. state dicts, epoch), received {type(payload).__name__}")
        path = self.path / (name if name.endswith(".pt") else f"{name}.pt")
        atomic_torch_save(path, payload)
        return path

    def finish(self, state: str, **info: Any) -> None:
        """Mark the run ended: status.json gets `state`, the end time and `info`; closes TensorBoard.

        `state` is one of ``finished``, ``stopped``, ``interrupted``, ``failed``. Calling it again
        once the run has ended changes nothing (the first end state is kept).
        """
        if state not in END_STATES:
            raise ValueError(f"state: expected one of {list(END_STATES)}, received {state!r}")
        clash = sorted(set(info) & {"started", "ended", "pid", "host"})
        if clash:
            raise ValueError(f"info: expected extra keys other than {clash}, which status.json sets itself")
        if self._state != "running":
            return
        self._state = state
        self._status = {**self._status, "state": state, "ended": _now(), **info}
        try:
            self.write_json("status.json", self._status)
        finally:
            try:
                self._close_writer()
            finally:
                self.lock.release()

    def _close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finish("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted", message="KeyboardInterrupt")
        else:
            self.finish("failed", message=f"{exc_type.__name__}: {exc}")


def _parse_cell(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in _INT_COLUMNS:
        try:
            return int(text)
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        return {"True": True, "False": False}.get(text, text)


def read_metrics(path: Path | str) -> list[dict]:
    """Read metrics.csv back (a run folder works too): numbers as float, ``epoch``/``member`` as int."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, received {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [{key: _parse_cell(key, text) for key, text in row.items()} for row in reader]


def read_status(path: Path | str) -> dict:
    """Read a run's status.json (give the run folder or the file)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, received {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        path = path / "status.json"
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
