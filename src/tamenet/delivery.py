"""A trained member as a self-contained model for production: raw rows in, answers out (I5).

`delivered_model(trained, member)` is member m as plain PyTorch (`TrainedModel.to_torch`: the
training split's standardization and the input selection inside) followed by the answer's head:

    classification:  p = softmax(f(x))                      [B, K], the columns in `classes` order
    regression:      value = f(x) * target_std + target_mean   [B], in the target's own units

`export_model` writes it as one file, and a small JSON beside it (`<file>.json`, `delivery_metadata`)
says what it takes and gives, with the run's provenance (recipe, data fingerprint, code version,
library versions):

* ``pt``: a `torch.export` program (`torch.export.save`) with a dynamic batch axis; it loads with
  PyTorch alone, ``torch.export.load(FILE).module()``, no tamenet needed;
* ``onnx``: `torch.onnx.export(dynamo=True)` with a dynamic batch axis, the weights inside the one
  file (needs the ``export`` extra: onnx, onnxscript; onnxruntime runs it).

Both take float32 rows [B, F] named ``rows`` and give ``probabilities`` or ``values``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .models.export import Probabilities, TargetUnits
from .trained import TrainedModel, load_run
from .track import atomic_write_bytes, atomic_write_json

FORMATS: dict[str, str] = {"pt": ".pt2", "onnx": ".onnx"}
"""Export format -> the suffix of the file it writes by default."""

METADATA_FORMAT = 1
"""The version of the JSON written beside an exported model."""


def choose_member(trained: TrainedModel, member: int | None) -> int:
    """The member to deliver: `member`, or the only one; a population needs one chosen."""
    members = trained.model.members
    if member is None:
        if members == 1:
            return 0
        raise ValueError(f"this run is a population of {members} members; expected a member to export "
                         f"(--member K with K in [0, {members - 1}])")
    if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < members:
        raise ValueError(f"--member: expected a member index in [0, {members - 1}], got {member!r}")
    return member


def delivered_model(trained: TrainedModel, member: int = 0) -> nn.Module:
    """Member `member` as `nn.Sequential(plain model, head)` in eval mode: raw rows [B, F] -> probabilities
    [B, K] (classification) or values [B] in the target's units (regression)."""
    plain = trained.to_torch(member)
    if trained.task == "classification":
        head: nn.Module = Probabilities()
    else:
        mean, std = plain.target_mean, plain.target_std
        head = TargetUnits(0.0 if mean is None else mean, 1.0 if std is None else std)
    model = nn.Sequential(plain, head).eval()
    model.requires_grad_(False)
    return model


def run_provenance(trained: TrainedModel) -> dict[str, Any]:
    """What the run directory's `run.json` says about where the model came from (empty when it has none)."""
    if trained.path is None:
        return {}
    file = Path(trained.path) / "run.json"
    try:
        info = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    keys = ("data_fingerprint", "code_version", "tamenet", "torch", "numpy", "python", "created", "seeds")
    return {k: info.get(k) for k in keys if k in info}


def delivery_metadata(trained: TrainedModel, member: int | None, *, fmt: str | None = None,
                      file: str | None = None) -> dict[str, Any]:
    """The JSON beside an exported (or served) model: inputs, outputs, labels, recipe and provenance
    (`member` None: the server's default, the mean over the members)."""
    from .config import to_dict

    names = trained.feature_names
    n_features = int(trained.preprocessing["n_features"])
    classification = trained.task == "classification"
    run = run_provenance(trained)
    output = ({"name": "probabilities", "shape": ["batch", len(trained.preprocessing["classes"])],
               "meaning": "class probabilities, columns in the order of 'classes'"} if classification else
              {"name": "values", "shape": ["batch"], "meaning": "predictions in the target's own units"})
    return {
        "metadata_format": METADATA_FORMAT,
        **({"format": fmt, "file": file} if fmt is not None else {}),
        "task": trained.task,
        "member": member,
        "members": trained.model.members,
        "inputs": {"name": "rows", "shape": ["batch", n_features], "dtype": "float32",
                   "meaning": "raw feature rows, columns in the order of 'feature_names' (standardized inside)"},
        "outputs": output,
        "feature_names": None if names is None else list(names),
        "classes": None if not classification else [_plain(c) for c in trained.preprocessing["classes"]],
        "target": trained.target_name,
        "recipe": to_dict(trained.recipe),
        "data_fingerprint": run.get("data_fingerprint"),
        "code_version": run.get("code_version"),
        "trained_with": {k: run.get(k) for k in ("tamenet", "torch", "numpy", "python")},
        "exported_with": {"tamenet": __version__, "torch": torch.__version__},
        "run_dir": None if trained.path is None else str(trained.path),
    }


def _plain(value: Any) -> Any:
    """A class label as a JSON value (NumPy scalars become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def example_rows(trained: TrainedModel, rows: int = 4) -> torch.Tensor:
    """Rows [rows, F] of float32 around the training mean (the scaler's mean, else zeros): a tracing input."""
    n_features = int(trained.preprocessing["n_features"])
    scaler = trained.preprocessing.get("scaler")
    centre = np.zeros(n_features) if scaler is None else np.asarray(scaler["mean"], dtype=np.float64).reshape(-1)
    spread = np.ones(n_features) if scaler is None else np.asarray(scaler["std"], dtype=np.float64).reshape(-1)
    noise = np.random.default_rng(0).standard_normal((rows, n_features))
    return torch.as_tensor(centre + noise * spread, dtype=torch.float32)


def _batch_axis() -> dict[int, Any]:
    return {0: torch.export.Dim("batch", min=1)}


def to_pt_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model as a saved `torch.export` program with a dynamic batch axis."""
    program = torch.export.export(model, (example,), dynamic_shapes=(_batch_axis(),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


class _DropNotes:
    """A logging filter that keeps only errors: the ONNX exporter's notes on the operators of packages that are
    not installed (torchvision) are not the user's concern."""

    def filter(self, record: Any) -> bool:
        return record.levelno >= 40  # logging.ERROR


def to_onnx_bytes(model: nn.Module, example: torch.Tensor, *, output: str) -> bytes:
    """The model as one ONNX file (weights inside) with a dynamic batch axis, through `torch.onnx.export`'s
    dynamo exporter. Raises `MissingExtraError` naming the `export` extra when onnx or onnxscript is missing."""
    import contextlib
    import logging
    import warnings

    from .extras import require

    for package in ("onnx", "onnxscript"):
        require(package, extra="export", feature="ONNX export")
    quiet = _DropNotes()
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    logger.addFilter(quiet)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), input_names=["rows"], output_names=[output],
                                        dynamic_shapes=(_batch_axis(),), dynamo=True, external_data=False,
                                        verbose=False)
    finally:
        logger.removeFilter(quiet)
    return program.model_proto.SerializeToString()


def export_model(trained: TrainedModel, fmt: str, out: str | Path | None = None, *,
                 member: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Write member `member` of a trained model as `fmt` ("pt" or "onnx") to `out` (default
    `<run>/export/model-m<K><suffix>`) and its metadata to `<out>.json`; returns (file, metadata)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown format {fmt!r} (valid: {', '.join(FORMATS)})")
    m = choose_member(trained, member)
    if out is None:
        base = Path(trained.path) if trained.path is not None else Path(".")
        out = base / "export" / f"model-m{m}{FORMATS[fmt]}"
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--out: expected a file name, got the directory {out}")
    model = delivered_model(trained, m)
    example = example_rows(trained)
    output = "probabilities" if trained.task == "classification" else "values"
    data = to_pt_bytes(model, example) if fmt == "pt" else to_onnx_bytes(model, example, output=output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    metadata = delivery_metadata(trained, m, fmt=fmt, file=out.name)
    atomic_write_json(out.with_name(out.name + ".json"), metadata)
    return out, metadata


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None, *,
               member: int | None = None) -> tuple[Path, dict[str, Any]]:
    """`export_model` of the model saved in a run directory (`load_run`)."""
    return export_model(load_run(run_dir), fmt, out, member=member)


__all__ = ["FORMATS", "METADATA_FORMAT", "choose_member", "delivered_model", "delivery_metadata", "example_rows",
           "export_model", "export_run", "run_provenance", "to_onnx_bytes", "to_pt_bytes"]
