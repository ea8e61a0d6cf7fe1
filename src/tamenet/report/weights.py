"""Per-layer weight statistics: what `weights.csv` in a run directory holds, one row per (epoch, member, layer).

For layer l of member m with weights W (its role "weight", biases and norms left out):

    norm        = ||W||_2 (Frobenius)
    zero_share  = #{w_ij == 0} / #W                  (exact zeros: L1's proximal step makes them)
    unit_share  = #{units whose incoming weights are all 0} / #units   (pruned units)

`WeightRecorder` is the listener that appends them after every epoch (`api.fit` adds it to a run with a
directory); the file is rewritten atomically, like metrics.csv.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from ..track.atomic import atomic_write_text
from ..train.events import Listener

WEIGHTS_FILE = "weights.csv"
COLUMNS = ("epoch", "member", "layer", "name", "norm", "zero_share", "unit_share", "size")


def weight_roles(model: torch.nn.Module) -> list:
    """The model's weight parameters (role "weight"), in layer order; empty for a model without roles."""
    roles = getattr(model, "param_roles", None)
    return [r for r in roles() if r.role == "weight"] if callable(roles) else []


@torch.no_grad()
def weight_stats(model: torch.nn.Module) -> list[dict]:
    """One dict per (member, weight layer): layer, name, norm, zero_share, unit_share, size (see the module)."""
    rows = []
    for role in weight_roles(model):
        w = role.per_member(role.param.detach()).double()
        members = w.shape[0]
        flat = w.reshape(members, -1)
        zero = flat == 0
        fan_in = tuple(role.fan_in_dims)
        dead = (w == 0).all(dim=fan_in) if fan_in else zero
        dead = dead.reshape(members, -1)
        for m in range(members):
            rows.append({"member": m, "layer": role.layer, "name": role.name,
                         "norm": float(flat[m].norm()), "zero_share": float(zero[m].double().mean()),
                         "unit_share": float(dead[m].double().mean()), "size": int(flat.shape[1])})
    return rows


class WeightRecorder(Listener):
    """Writes every epoch's per-layer weight norms and zero shares to `<run>/weights.csv`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict] = read_weights(self.path)  # a resumed run keeps the epochs before its checkpoint

    def epoch_end(self, trainer, record) -> None:
        epoch = int(record.epoch)
        self.rows = [r for r in self.rows if r["epoch"] < epoch]  # rows past a resume point are trained again
        self.rows += [{"epoch": epoch, **row} for row in weight_stats(trainer.model)]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path / WEIGHTS_FILE, buffer.getvalue())


def read_weights(run: Path) -> list[dict]:
    """weights.csv back as dicts (numbers parsed); [] when the run has none."""
    path = Path(run) / WEIGHTS_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        out = []
        for row in csv.DictReader(handle):
            out.append({k: (v if k == "name" else int(v) if k in ("epoch", "member", "layer", "size") else float(v))
                        for k, v in row.items()})
        return out


__all__ = ["WEIGHTS_FILE", "WeightRecorder", "read_weights", "weight_stats"]
