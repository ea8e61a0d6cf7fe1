"""Run tracking: atomic run directories, metrics, checkpoints, TensorBoard, curves and tables (I3, I4, X3).

The names below are imported on first use (PEP 562): reading a run's status or lock, or printing a
table, loads neither torch nor matplotlib (the command line's `tamenet runs` answers at once).
"""

from __future__ import annotations

from ..lazy import lazy_attributes

EXPORTS: dict[str, str] = {
    "atomic_torch_save": "atomic", "atomic_write_bytes": "atomic", "atomic_write_json": "atomic",
    "atomic_write_text": "atomic", "to_jsonable": "atomic",
    "plot_curves": "plots", "save_figure": "plots",
    "END_STATES": "rundir", "RunDir": "rundir", "RunDirExistsError": "rundir", "read_metrics": "rundir",
    "read_status": "rundir",
    "RunLockedError": "lock", "run_state": "lock",
    "format_cell": "tables", "format_table": "tables",
}
"""Public name -> the submodule that defines it."""

__all__ = sorted(EXPORTS)


__getattr__, __dir__ = lazy_attributes(__name__, EXPORTS, globals())
