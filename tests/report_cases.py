"""Small directories for the report tests: a constructed run that overfits at a known epoch, and real tiny
run / cv / search directories written by the CLI (each with its report.html)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from tamenet.cli import main
from tamenet.track import RunDir

TINY = {"data": {"name": "digits"}, "model": {"widths": [16], "dropout": [0.0, 0.2]}, "penalty": {"l2": 1e-4},
        "train": {"epochs": 4, "batch_size": 128, "lr": 0.01}, "track": {"tensorboard": False}, "seed": 0}
ONSET = 12


def overfitting_history(epochs: int = 40, onset: int = ONSET) -> tuple[list[float], list[float]]:
    """Training loss falling throughout; validation loss falling until `onset`, then rising (a parabola)."""
    train = [2.0 * math.exp(-0.1 * e) for e in range(1, epochs + 1)]
    val = [0.8 + 0.004 * (e - onset) ** 2 for e in range(1, epochs + 1)]
    return train, val


def constructed_run(path: Path, *, onset: int = ONSET, epochs: int = 40) -> Path:
    """A run directory written by hand (summary.json, metrics.csv, recipe.yaml) whose member overfits at `onset`."""
    train, val = overfitting_history(epochs, onset)
    with RunDir(path, tensorboard=False) as run:
        for e in range(epochs):
            run.log_epoch([{"epoch": e + 1, "train_loss": train[e], "train_accuracy": 1.0 - 0.3 * train[e] / 2,
                            "val_loss": val[e], "val_accuracy": 0.9 - 0.002 * abs(e + 1 - onset)}])
        run.write_recipe({"penalty": {"l2": 1e-3}, "model": {"kind": "mlp", "widths": [64], "dropout": 0.0},
                          "train": {"epochs": epochs, "lr": 0.01, "early_stopping": {"patience": None}}})
        entry = {"train": {"loss": train[-1], "accuracy": 0.99}, "val": {"loss": val[-1], "accuracy": 0.85}}
        run.write_json("summary.json", {"task": "classification", "metric": "accuracy", "dataset": "constructed",
                                        "members": 1, "epochs_run": epochs, "epochs_max": epochs, "parameters": 100,
                                        "wall_time_s": 1.0, "seed": 0, **entry, "best_epoch": onset,
                                        "stopped_early": False, "diverged_at_epoch": None})
    return path


def write_recipe(path: Path, recipe: dict) -> str:
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


_BUILT: dict[str, dict] = {}


def cli_dirs(root_factory) -> dict:
    """run (two members: l2 0 and 1e-3), cv (3 folds) and search (4 l2 values x 2 folds, halving) directories,
    all with hidden dropout 0.2, written once per test session (both report test files use them).

    The cv job runs with --no-report; `cv_report_before` records whether report.html existed after it, and
    `report_exit` the exit code of `tamenet report` on it afterwards."""
    if "dirs" in _BUILT:
        return _BUILT["dirs"]
    root = Path(root_factory.mktemp("report-dirs"))
    recipe = write_recipe(root / "tiny.yaml", {**TINY, "penalty": {"l2": [0.0, 1e-3]}})
    single = write_recipe(root / "single.yaml", TINY)
    out: dict = {"run": root / "run", "cv": root / "cv", "search": root / "search"}
    assert main(["train", recipe, "--out", str(out["run"])]) == 0
    assert main(["cv", single, "--folds", "3", "--out", str(out["cv"]), "--no-report"]) == 0
    out["cv_report_before"] = (out["cv"] / "report.html").exists()
    out["report_exit"] = main(["report", str(out["cv"])])
    assert main(["search", single, "--grid", "penalty.l2=1e-4:1e-1:4", "--folds", "2", "--halving", "2",
                 "--out", str(out["search"])]) == 0
    _BUILT["dirs"] = out
    return out


def read(path: Path) -> str:
    return (path / "report.html").read_text(encoding="utf-8")


def search_json(path: Path) -> dict:
    return json.loads((path / "search.json").read_text())
