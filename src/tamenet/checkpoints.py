"""Reading tamenet's checkpoints safely: `model.pt` (a trained model) and `last.pt` (the state `--resume` needs).

`load_checkpoint` is the one way in. It loads with ``torch.load(weights_only=True)``, so a file
can hold only tensors and plain containers (never code to run), and checks that what it holds is
a tamenet payload of the format this version reads. Every way a file can be unusable (missing,
empty, truncated, random bytes, a torch file that is not tamenet's, another format version) ends
in one `CheckpointError`, a ValueError whose one-line message names the file and what was wrong.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import __version__

CHECKPOINT_FORMAT = 1
"""The version of the payloads `model.pt` and `last.pt` hold; a file of another version is refused."""

MODEL_KEYS: dict[str, type] = {"recipe": dict, "preprocessing": dict, "n_in": int, "n_out": int, "state_dict": dict}
"""What a `model.pt` payload must hold (besides its `format`), with the type of each entry."""

RESUME_KEYS: dict[str, type] = {"recipe": dict, "trainer": dict}
"""What a `last.pt` payload must hold."""

KINDS: dict[str, dict[str, Any]] = {
    "model": {"keys": MODEL_KEYS, "needs_format": True,
              "missing": "no trained model at {file} (expected a run directory written by 'tamenet train')"},
    "resume": {"keys": RESUME_KEYS, "needs_format": False,  # last.pt files written before it carried a format
               "missing": "cannot resume: no checkpoint {file} (was the run started with checkpoints on?)"},
}
"""Checkpoint kind -> the entries it needs, whether a `format` entry is required, the message when it is missing."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, unreadable, not a tamenet payload, or of another format."""


class CheckpointMissingError(CheckpointError, FileNotFoundError):
    """No checkpoint file where one was expected (also a FileNotFoundError, as before checkpoints were checked)."""


def load_checkpoint(path: str | Path, *, kind: str = "model") -> dict[str, Any]:
    """The validated payload of the `kind` ("model": `model.pt`, "resume": `last.pt`) checkpoint at `path`.

    Raises `CheckpointError` (one line naming the file) when it cannot be used.
    """
    if kind not in KINDS:
        raise ValueError(f"load_checkpoint: expected kind 'model' or 'resume', got {kind!r}")
    file = Path(path)
    if not file.exists():
        raise CheckpointMissingError(KINDS[kind]["missing"].format(file=file))
    return check_payload(read_weights_only(file), file, kind=kind)


def read_weights_only(file: Path, *, modules_of: tuple[str, ...] = ()) -> Any:
    """What `torch.load(weights_only=True)` reads from `file`, every failure turned into a `CheckpointError`.

    `modules_of` names packages (e.g. ``("torch.nn.", "tamenet.")``) whose classes the file may hold besides
    tensors and plain containers (a whole `nn.Module` saved by `tamenet shrink`): each class the file names is
    checked against them before anything is imported or built, then allowed for this one load only; a class from
    anywhere else is refused. Nothing in the file can call code outside those packages' classes.
    """
    if file.is_dir():
        raise CheckpointError(f"{file} is a directory, expected a checkpoint file")
    try:
        with file.open("rb"):  # no permission, say: a reason of its own, before any torch error
            size = file.stat().st_size
    except OSError as err:
        raise CheckpointError(f"{file} cannot be read: {err.strerror or err}") from err
    if size == 0:
        raise CheckpointError(f"{file} is empty (0 bytes), expected a checkpoint written by tamenet; "
                              "was it cut off while copied? Retrain, or restore it from a copy")
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of a file it cannot read anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            with torch.serialization.safe_globals(_classes_in(file, modules_of) if modules_of else []):
                return torch.load(file, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except MemoryError:
        raise
    except pickle.UnpicklingError as err:
        if zipfile.is_zipfile(file):  # a whole torch file, but with objects the weights-only reader refuses
            raise CheckpointError(
                f"{file} is not a tamenet checkpoint: it holds Python objects other than tensors and plain "
                "containers, which tamenet never loads"
            ) from err
        raise CheckpointError(_unreadable(file, size)) from err
    except Exception as err:  # torch.load fails in many ways on a cut-off or foreign file, OSError included
        raise CheckpointError(_unreadable(file, size)) from err


def _classes_in(file: Path, packages: tuple[str, ...]) -> list[type]:
    """The classes `file`'s pickle names beyond the weights-only defaults, each one of `packages`' nn.Modules."""
    import importlib

    classes = []
    for name in torch.serialization.get_unsafe_globals_in_checkpoint(file):
        module, _, attr = name.rpartition(".")
        found = getattr(importlib.import_module(module), attr, None) if name.startswith(packages) else None
        if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
            raise CheckpointError(f"{file} holds {name}, expected only the modules of {', '.join(packages)}; "
                                  "tamenet does not load it")
        classes.append(found)
    return classes


def _unreadable(file: Path, size: int) -> str:
    return (f"{file} cannot be read as a checkpoint ({size} bytes): it is truncated or corrupted, or not a "
            "torch file; retrain, or restore it from a copy")


def check_payload(payload: Any, file: Path, *, kind: str) -> dict[str, Any]:
    """`payload` itself when it is a tamenet checkpoint of this format and `kind`, else a `CheckpointError`."""
    spec = KINDS[kind]
    expected = ", ".join(["format", *spec["keys"]])
    if not isinstance(payload, dict):
        raise CheckpointError(f"{file} is not a tamenet checkpoint: it holds a {type(payload).__name__}, "
                              f"expected a dict with the entries {expected}")
    if "format" in payload or spec["needs_format"]:
        check_format(payload, file, expected)
    missing = [key for key in spec["keys"] if key not in payload]
    if missing:
        raise CheckpointError(f"{file} is not a tamenet checkpoint: it lacks the entries {', '.join(missing)} "
                              f"(expected {expected}; found {_keys(payload)})")
    for key, wanted in spec["keys"].items():
        value = payload[key]
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise CheckpointError(f"{file} is not a tamenet checkpoint: its entry '{key}' is of type "
                                  f"{type(value).__name__}, expected {wanted.__name__}")
    return payload


def check_format(payload: dict, file: Path, expected: str) -> None:
    """Refuse a payload without a `format` entry, or of another format than `CHECKPOINT_FORMAT`."""
    if "format" not in payload:
        raise CheckpointError(f"{file} is not a tamenet checkpoint: it has no 'format' entry "
                              f"(expected {expected}; found {_keys(payload)})")
    found = payload["format"]
    if found != CHECKPOINT_FORMAT or isinstance(found, bool):
        writer = payload.get("tamenet_version")
        by = f", written by tamenet {writer}" if isinstance(writer, str) else ""
        raise CheckpointError(
            f"{file}: checkpoint format {found!r}{by}; this tamenet ({__version__}) expects format "
            f"{CHECKPOINT_FORMAT}. Load it with the tamenet version that wrote it, or retrain"
        )


def _keys(payload: dict) -> str:
    shown = [str(k) for k in list(payload)[:8]]
    more = f" and {len(payload) - 8} more" if len(payload) > 8 else ""
    return (", ".join(shown) + more) if shown else "no entries"
