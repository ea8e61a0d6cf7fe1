"""Post-training quantization of a trained run (H2): `tamenet quantize RUN_DIR --bits B`.

The run's population is rebuilt (`load_run`), every weight layer gets a `WeightQuantizer` at `bits`
bits (its range the weight's own min and max, per tensor or per output channel: a min-max observer
of the weight) and, with `activations`, every layer's input an `ActivationQuantizer` whose observer is
calibrated on the run's TRAINING rows only (`prepare(recipe.data).X_train`, the rows split.json
lists; the recorded data fingerprint must match). In eval mode the model then computes

    y = f(S_a (Q(x) - Z_a); S_w (Q(W) - Z_w)),     Q(r) = clamp(round(r / S) + Z, q_min, q_max),

which is what a b-bit integer kernel computes, simulated in float ("fake quantization"; Jacob et al.
2018, Krishnamoorthi 2018). The result is a NEW run directory, written to a temporary folder and
renamed into place at the end (the source is only read): its recipe has the `quantize:` section
(so `evaluate`, `predict`, `export` and `serve` rebuild the quantized model), model.pt the source's
weights with the calibrated ranges, run.json and quantization.json the source run, bits and scheme,
summary.json the accuracy before and after.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from ..checkpoints import load_checkpoint
from ..config import QuantizeConfig, to_dict
from ..models.base import Population
from ..nn import Linear
from ..track import atomic_torch_save, atomic_write_json, atomic_write_text
from .activations import calibrate, remove_activation_quantizers
from .qat import attach_weight_quantizers, quantized_layers
from .quantize import check_bits

COPIED_FILES = ("split.json", "metrics.csv")
"""Files of the source run that the quantized run keeps as they are (the split and the training curves)."""

SCALE_BYTES = 8
"""Bytes that one quantizer's (S, Z) take in storage: a float32 scale and a 32-bit zero point."""


@dataclass(frozen=True)
class Scheme:
    """What `tamenet quantize` does: bits, symmetric or asymmetric, per tensor or per channel, activations too."""

    bits: int
    symmetric: bool = False
    per_channel: bool = False
    activations: bool = False
    observer: str = "minmax"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise TypeError(f"--bits: expected a whole bit width in [2, 16], got {self.bits!r}")
        check_bits(self.bits)

    def config(self, layers: list[str] | None = None) -> QuantizeConfig:
        return QuantizeConfig(bits=self.bits, symmetric=self.symmetric, per_channel=self.per_channel,
                              activations=self.activations, observer=self.observer, layers=layers)

    def describe(self) -> str:
        what = "weights and activations" if self.activations else "weights"
        return (f"{self.bits}-bit {'symmetric' if self.symmetric else 'asymmetric'} "
                f"{'per-channel' if self.per_channel else 'per-tensor'} {what}")


@dataclass
class QuantizedRun:
    """What `quantize_run` wrote and measured."""

    path: Path
    source: Path
    scheme: Scheme
    before: dict[str, Any]  # `evaluate_run` of the source
    after: dict[str, Any]  # `evaluate_run` of the quantized run
    size: dict[str, int]  # bytes of one member: float32, and at `bits` bits (weights packed, S and Z added)
    latency: dict[str, float]  # median seconds per batch of the float and the fake-quantized population


def quantize_population(model: Population, scheme: Scheme, X_train: torch.Tensor, *,
                        layers: list[str] | None = None) -> Population:
    """In place: every member's weight layers (or `layers`) on the `scheme`'s grid, the activation observers
    calibrated on `X_train` (training rows only). Returns the model, in eval mode."""
    cfg = scheme.config(layers)
    if not quantized_layers(model, cfg):
        raise ValueError(f"nothing to quantize: the model ({type(model).__name__}) has no tamenet dense or "
                         "convolutional layers")
    remove_activation_quantizers(model)  # a source trained with quantized activations starts from float inputs
    attach_weight_quantizers(model, cfg, [scheme.bits] * model.members)
    if scheme.activations:
        calibrate(model, X_train)
    return model.eval()


def member_bytes(model: Population, scheme: Scheme | None) -> int:
    """Storage of one member: float32 for everything, except quantized weights at `bits` bits (packed) plus
    SCALE_BYTES per quantizer (per tensor, or per output channel) and per activation quantizer."""
    total = sum(p.numel() for p in model.parameters()) // model.members * 4
    if scheme is None:
        return total
    for layer in quantized_layers(model, scheme.config()):
        n = layer.weight[0].numel()
        channels = layer.weight.shape[-1] if isinstance(layer, Linear) else layer.weight.shape[1]
        quantizers = channels if scheme.per_channel else 1
        total += -n * 4 + (n * scheme.bits + 7) // 8 + SCALE_BYTES * (quantizers + int(scheme.activations))
    return total


@torch.no_grad()
def median_batch_seconds(model: torch.nn.Module, X: torch.Tensor, *, repeats: int = 15, warmup: int = 3) -> float:
    """Median wall time of `model(X)` in eval mode over `repeats` calls, after `warmup` calls."""
    model.eval()
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        model(X)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def default_out(source: Path, scheme: Scheme) -> Path:
    """`<run>-q<bits>` beside the source (`-a` when activations are quantized too)."""
    return source.with_name(f"{source.name}-q{scheme.bits}{'a' if scheme.activations else ''}")


def check_destination(source: Path, out: Path) -> Path:
    """The new run's folder: refused when it exists or lies inside the source (the source is never touched)."""
    if out.exists():
        raise FileExistsError(f"--out {out}: already exists; expected a new folder for the quantized run")
    if source.resolve() == out.resolve() or source.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out}: inside the source run {source}; expected a folder outside it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: its folder {out.parent} does not exist")
    return out


def quantize_run(run_dir: str | Path, scheme: Scheme, out: str | Path | None = None, *,
                 latency_rows: int = 256) -> QuantizedRun:
    """Post-training quantization of the run in `run_dir` into a new run directory `out` (see the module)."""
    from ..data import prepare
    from ..trained import evaluate_run, load_run

    source = Path(run_dir)
    trained = load_run(source)  # refuses a folder without a tamenet model.pt, in one line
    destination = check_destination(source, Path(out) if out is not None else default_out(source, scheme))
    before = evaluate_run(source)  # also checks the data fingerprint
    data = prepare(trained.recipe.data)
    float_model = trained.model
    rows = data.X_test if len(data.X_test) else data.X_train
    rows = rows[:latency_rows]
    float_seconds = median_batch_seconds(float_model, rows)
    float_bytes = member_bytes(float_model, None)
    layers = trained.recipe.quantize.layers
    model = quantize_population(float_model, scheme, data.X_train, layers=layers)
    recipe = dataclasses.replace(trained.recipe, quantize=scheme.config(layers))
    payload = load_checkpoint(source / "model.pt", kind="model")
    payload = {**payload, "recipe": to_dict(recipe), "state_dict": model.state_dict()}
    record = {"source": str(source), "bits": scheme.bits,
              "scheme": "symmetric" if scheme.symmetric else "asymmetric",
              "granularity": "channel" if scheme.per_channel else "tensor",
              "activations": scheme.activations, "observer": scheme.observer if scheme.activations else None,
              "calibration_rows": int(len(data.X_train)) if scheme.activations else 0,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        atomic_torch_save(staging / "model.pt", payload)
        atomic_write_text(staging / "recipe.yaml", yaml.safe_dump(to_dict(recipe), sort_keys=False, allow_unicode=True))
        for name in COPIED_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)
        info = _read_json(source / "run.json")
        atomic_write_json(staging / "run.json", {**info, "quantized_from": record})
        after = evaluate_run(staging)
        quantized_seconds = median_batch_seconds(load_run(staging).model, rows)
        size = {"float32": float_bytes, "quantized": member_bytes(model, scheme)}
        latency = {"float32": float_seconds, "quantized": quantized_seconds, "rows": int(len(rows))}
        summary = {**_read_json(source / "summary.json"), **_top_line(after)}
        summary["quantization"] = {**record, "before": before, "after": after, "member_bytes": size,
                                   "median_batch_seconds": latency}
        atomic_write_json(staging / "summary.json", summary)
        atomic_write_json(staging / "quantization.json", summary["quantization"])
        now = record["created"]
        atomic_write_json(staging / "status.json", {"state": "finished", "started": now, "ended": now,
                                                    "quantized_from": str(source)})
        os.replace(staging, destination)  # the whole run appears at once
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return QuantizedRun(destination, source, scheme, before, after, size, latency)


def _read_json(file: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _top_line(result: dict[str, Any]) -> dict[str, Any]:
    """summary.json's split numbers of a single-member run from `evaluate_run`'s (a population keeps its own)."""
    if result.get("members") != 1:
        return {}
    metric = result["metric"]
    return {split: {"loss": result[split]["loss"][0], metric: result[split][metric][0]}
            for split in ("train", "val", "test") if split in result}


__all__ = ["QuantizedRun", "Scheme", "check_destination", "default_out", "median_batch_seconds", "member_bytes",
           "quantize_population", "quantize_run"]
