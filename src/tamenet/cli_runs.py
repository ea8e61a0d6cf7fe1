"""`tamenet runs [DIR]`: the run folders under DIR (default runs/) with their status, data, model, key numbers,
best score and size on disk. Reads only JSON and YAML files: no torch."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="list run directories: status, data, model, numbers, best score, size",
                          description="List the run folders under DIR (each holding a status.json), newest first.")
    runs.add_argument("folder", nargs="?", default="runs", metavar="DIR",
                      help="a folder of runs, or one run folder (default: runs)")


def folder_size(path: Path) -> int:
    """Bytes on disk of every file under `path` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def describe(run: Path) -> dict[str, Any]:
    """One row of the listing: what the run's status.json, recipe.yaml and summary.json (or cv.json / search.json) say."""
    from .recipe_files import load_yaml
    from .track.lock import run_state

    state = run_state(run)
    try:
        recipe = load_yaml((run / "recipe.yaml").read_text(encoding="utf-8")) or {}
    except Exception:  # a hand-edited or cut-off recipe.yaml still lists the run
        recipe = {}
    recipe = recipe if isinstance(recipe, dict) else {}
    data, model = recipe.get("data") or {}, recipe.get("model") or {}
    row: dict[str, Any] = {
        "run": run.name, "status": state.get("state", "unknown"), "data": data.get("name", "-"),
        "model": _model_text(model), "numbers": "-", "best": "-", "size": human_size(folder_size(run)),
        "started": state.get("started", ""),
    }
    summary = _json(run / "summary.json")
    selection = _json(run / "search.json") or _json(run / "cv.json")
    if isinstance(summary, dict) and "metric" in summary:
        metric = summary["metric"]
        members = summary.get("per_member") or [summary]
        part = "test" if "test" in members[0] else "val" if "val" in members[0] else "train"
        scores = [m[part][metric] for m in members if isinstance(m.get(part), dict) and metric in m[part]]
        if scores:
            best = max(scores) if metric == "accuracy" else min(scores)
            row["best"] = f"{part} {metric} {best:.4g}"
        row["numbers"] = (f"{summary.get('members', 1)} member{'s' * (summary.get('members', 1) != 1)}, "
                          f"{summary.get('epochs_run')}/{summary.get('epochs_max')} epochs, "
                          f"{summary.get('parameters', 0):,} weights")
    elif isinstance(selection, dict) and "metric" in selection:
        metric = selection["metric"]
        best = selection.get("best") or {}
        value = best.get(f"cv_{metric}_mean")
        if value is None and selection.get("candidates"):
            value = selection["candidates"][0].get(f"cv_{metric}_mean")
        if isinstance(value, (int, float)):
            row["best"] = f"cv {metric} {value:.4g}"
        row["numbers"] = (f"{selection.get('scheme', '?')}, {selection.get('folds', '?')} folds, "
                          f"{len(selection.get('candidates') or [])} candidates")
    return row


def _model_text(model: dict) -> str:
    kind = model.get("kind", "mlp")
    if kind == "mlp" and isinstance(model.get("widths"), list):
        return "mlp " + "-".join(str(w) for w in model["widths"])
    if kind in ("cnn", "resnet") and isinstance(model.get("channels"), list):
        return f"{kind} " + "-".join(str(c) for c in model["channels"])
    return str(kind)


def find_runs(folder: Path) -> list[Path]:
    """`folder` itself when it is a run (holds status.json), else its sub-folders that are, newest first."""
    if (folder / "status.json").is_file():
        return [folder]
    runs = [p for p in folder.iterdir() if p.is_dir() and (p / "status.json").is_file()]
    return sorted(runs, key=lambda p: (p / "status.json").stat().st_mtime, reverse=True)


def run(args: argparse.Namespace) -> int:
    from .track.tables import format_table

    folder = Path(args.folder)
    if not folder.is_dir():
        what = "a file" if folder.exists() else "nothing there"
        raise FileNotFoundError(f"{folder}: expected a folder of runs (default: runs), got {what}")
    rows = [describe(p) for p in find_runs(folder)]
    if not rows:
        print(f"no runs in {folder} (a run folder holds a status.json)")
        return 0
    columns = ["run", "status", "data", "model", "numbers", "best", "size"]
    print(format_table(columns, [[r[c] for c in columns] for r in rows]))
    total = sum(folder_size(folder / r["run"]) if folder.name != r["run"] else folder_size(folder) for r in rows)
    print(f"{len(rows)} run{'s' * (len(rows) != 1)}, {human_size(total)} on disk")
    return 0
