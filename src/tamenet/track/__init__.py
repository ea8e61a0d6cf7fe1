"""Run tracking: atomic run directories, metrics, checkpoints, TensorBoard, curves and tables (I3, I4, X3)."""

from tamenet.track.atomic import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    to_jsonable,
)
from tamenet.track.plots import plot_curves, save_figure
from tamenet.track.rundir import END_STATES, RunDir, RunDirExistsError, read_metrics, read_status
from tamenet.track.tables import format_cell, format_table

__all__ = [
    "END_STATES",
    "RunDir",
    "RunDirExistsError",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "format_cell",
    "format_table",
    "plot_curves",
    "save_figure",
    "read_metrics",
    "read_status",
    "to_jsonable",
]
