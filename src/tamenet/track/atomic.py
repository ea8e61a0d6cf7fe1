"""Atomic file writes: a reader (or a crash) sees either the old file or the new one, never half of one.

Every writer puts the data in a temporary file in the target's own folder, flushes and fsyncs it,
then renames it over the target with `os.replace` (atomic on POSIX and Windows within one file
system). On any failure the temporary file is removed and the old target is left untouched.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "to_jsonable",
]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file; mkstemp makes 0600


def _as_path(path: Any, *, what: str = "path") -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise TypeError(f"{what}: expected a str or os.PathLike, received {type(path).__name__}")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Any, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then move it over `path`."""
    target = _as_path(path)
    folder = target.parent
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, _FILE_MODE)
        except OSError:
            pass
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, `os.replace`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, received {type(data).__name__}")
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (UTF-8 unless told otherwise)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, received {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding))


def to_jsonable(obj: Any) -> Any:
    """Turn `obj` into plain Python (dict, list, str, int, float, bool, None) that `json` can write.

    Converts numpy scalars and arrays, torch tensors (to lists, or numbers when 0-d), tuples and sets
    (to lists), paths (to str), enums (to their value) and dataclass instances (to dicts). Dict keys
    become strings. Non-finite floats are kept (written as ``NaN`` / ``Infinity``, as Python's json does).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")  # loaded only by whoever made such values
    if np is not None and isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if np is not None and isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if torch is not None and isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {field.name: to_jsonable(getattr(obj, field.name)) for field in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {_json_key(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(item) for item in obj]
    if isinstance(obj, (set, frozenset)):
        items = [to_jsonable(item) for item in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    raise TypeError(
        "to_jsonable: expected plain Python, numpy or torch values (dict, list, number, str, tensor, ...), "
        f"received {type(obj).__name__}"
    )


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    plain = to_jsonable(key)
    if isinstance(plain, str):
        return plain
    if isinstance(plain, (int, float, bool)) or plain is None:
        return json.dumps(plain)  # as json itself writes such keys: 1 -> "1", True -> "true"
    raise TypeError(f"to_jsonable: expected dict keys that are str or numbers, received {type(key).__name__}")


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write `obj` as JSON (indent 2, keys in insertion order) atomically; see `to_jsonable`."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, ensure_ascii=False)
    atomic_write_text(path, text + "\n")


def atomic_torch_save(path: Path | str, obj: Any) -> None:
    """`torch.save(obj)` to `path` atomically: a killed process leaves the previous checkpoint intact."""
    import torch

    _atomic_write(path, lambda handle: torch.save(obj, handle))
