"""Deployment formats of an exported member (H2): real int8 weights (torchao), fp16 and bf16 casts, side by side.

Each format is a copy of member m as plain PyTorch (`export_member`, taking the population's standardized
rows):

- ``fp32``: the exported model as it is (the reference);
- ``int8``: torchao's int8 weight-only configuration, `torchao.quantization.quantize_(model,
  Int8WeightOnlyConfig())`: every `nn.Linear` weight stored as int8 with one symmetric scale per output
  row (Q = round(w / S), S = max|w_row| / 127.5 in torchao's convention), dequantized inside the matmul;
  activations stay float. Convolutions are left in fp32 (the configuration targets linear layers);
- ``fp16`` / ``bf16``: every parameter and buffer cast (`model.to(dtype)`), the rows cast on the way in
  and the outputs cast back to float32.

`deploy_table` measures, per format: parameters, bytes on disk (`torch.save` of the model to a temporary
file, the state dict), the median latency of one batch on one thread and the metric on given rows. On a CPU without native
half-precision matrix units (this machine) fp16 and bf16 matmuls are emulated and SLOWER than fp32, and
int8 weight-only dequantizes every weight at every call: the table's `vs_fp32` column says by how much.
Needs the `compress` extra (torchao) for int8.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import read_weights_only
from ..extras import require
from .ptq import median_batch_seconds

HALF_DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}
DEPLOY_FORMATS = ("fp32", "int8", "fp16", "bf16")
"""The formats `deploy_model` makes, in table order."""

QUIET_LOGGERS = ("torchao", "torch.utils._pytree")
"""Loggers that torchao's import fills with notes of no use to a CPU user (CUDA kernels it cannot load)."""


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Silence torchao's import: its warnings about the CUDA extension libraries this build cannot load."""
    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def import_torchao():
    """`torchao.quantization`, imported quietly; a one-line `MissingExtraError` naming the extra when absent."""
    with _quiet_import():
        require("torchao", extra="compress", feature="int8 deployment")
        return require("torchao.quantization", extra="compress", feature="int8 deployment")


class CastRows(nn.Module):
    """A model in a half-precision dtype behind float32 rows: x -> model(x.to(dtype)).float()."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def int8_weight_only(model: nn.Module) -> nn.Module:
    """A copy of `model` with torchao's int8 weight-only configuration applied to its linear layers."""
    quantization = import_torchao()
    out = copy.deepcopy(model).eval()
    with _quiet_import():
        quantization.quantize_(out, quantization.Int8WeightOnlyConfig())
    return out


def deploy_model(plain: nn.Module, fmt: str) -> nn.Module:
    """Member `plain` (an exported float32 model) in format `fmt` (one of DEPLOY_FORMATS), a copy in eval mode."""
    if fmt == "fp32":
        return copy.deepcopy(plain).eval()
    if fmt == "int8":
        return int8_weight_only(plain)
    if fmt in HALF_DTYPES:
        return CastRows(copy.deepcopy(plain), HALF_DTYPES[fmt]).eval()
    raise ValueError(f"--format: unknown deployment format {fmt!r} (valid: {', '.join(DEPLOY_FORMATS)}, all)")


def formats_asked(text: str) -> list[str]:
    """`--format` as a list: one of DEPLOY_FORMATS without fp32, or "all" (fp32 is always the table's reference)."""
    if text == "all":
        return list(DEPLOY_FORMATS)
    if text not in DEPLOY_FORMATS:
        raise ValueError(f"--format: unknown deployment format {text!r} (valid: int8, fp16, bf16, all)")
    return ["fp32", text] if text != "fp32" else ["fp32"]


def saved_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())` written to a temporary file (torchao's int8 tensors pickle
    inside a state dict, not inside a whole module)."""
    handle, name = tempfile.mkstemp(suffix=".pt")
    os.close(handle)
    try:
        torch.save(model.state_dict(), name)
        return os.path.getsize(name)
    finally:
        os.unlink(name)


def load_deployed(plain: nn.Module, fmt: str, file: str | os.PathLike) -> nn.Module:
    """A deployment file written by `tamenet quantize --format` read back: the exported member `plain`
    (`TrainedModel.to_torch(K)` without preprocessing: `export_member(model, K)`) made into `fmt`, its
    tensors replaced by the file's (`load_state_dict(assign=True)`), read weights-only (torchao's int8 tensor
    classes are registered as safe by torchao itself)."""
    model = deploy_model(plain, fmt)
    with _quiet_import():  # torchao's import registers its tensor classes as safe for weights-only loading
        state = read_weights_only(Path(file))
    model.load_state_dict(state, assign=True)
    return model.eval()


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows whose largest output is the label."""
    return float((outputs.argmax(-1) == y).float().mean())


def deploy_table(plain: nn.Module, X: torch.Tensor, y: torch.Tensor, *, formats: list[str] | None = None,
                 batch_rows: int = 256, repeats: int = 15,
                 score: Callable[[torch.Tensor, torch.Tensor], float] = accuracy) -> list[dict]:
    """One row per format: format, parameters, bytes (torch.save), seconds (median per batch of `batch_rows`
    rows, on the calling threads: set torch.set_num_threads(1) for the one-thread figure), vs_fp32 (seconds
    over fp32's), metric (`score` of the outputs on X, y)."""
    rows, reference = [], None  # bytes: torch.save of the state dict
    batch = X[:batch_rows]
    for fmt in formats or list(DEPLOY_FORMATS):
        model = deploy_model(plain, fmt)
        with torch.no_grad():
            outputs = torch.cat([model(X[i:i + 1024]) for i in range(0, len(X), 1024)]).float()
        seconds = median_batch_seconds(model, batch, repeats=repeats)
        reference = seconds if fmt == "fp32" else reference
        rows.append({"format": fmt, "parameters": sum(p.numel() for p in plain.parameters()),
                     "bytes": saved_bytes(model), "seconds": seconds,
                     "vs_fp32": None if reference is None else seconds / reference, "metric": score(outputs, y)})
    return rows


def slower_note(rows: list[dict]) -> str:
    """A sentence naming the formats slower than fp32 in the table, and by how much."""
    slow = [f"{r['format']} {r['vs_fp32']:.1f}x" for r in rows if r["vs_fp32"] is not None and r["vs_fp32"] > 1.05]
    if not slow:
        return "no format is slower than fp32 here"
    return "SLOWER than fp32 on this machine: " + ", ".join(slow) + " (its time per batch over fp32's)"


__all__ = ["DEPLOY_FORMATS", "CastRows", "deploy_model", "deploy_table", "formats_asked", "import_torchao",
           "int8_weight_only", "load_deployed", "saved_bytes", "slower_note"]
