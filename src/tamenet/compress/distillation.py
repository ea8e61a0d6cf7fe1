"""Distillation in the training step (H3): the teacher's logits on the student's rows, and the loss piece.

The teacher is a finished run directory. Before training, its logits are computed once on every
row the student trains and validates on (raw rows, through the teacher's own preprocessing; the
members of a population or `--ensemble` run averaged), after checks that it fits: a classifier of
the same classes and features, trained on the same data, and never on a row the student validates
or tests on (its `split.json` says which rows it trained on). `DistillTargets` then replaces the
hard-label loss: at each step it picks the batch's rows of those logits (`Trainer.batch_positions`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import Recipe, RecipeError
from .distill import distillation_loss


def _teacher_split(teacher_dir: Path) -> dict:
    path = teacher_dir / "split.json"
    if not path.is_file():
        raise RecipeError(f"distill.teacher: {teacher_dir} has no split.json, so nothing shows which rows the teacher "
                          "trained on; expected a run directory written by `tamenet train`")
    return json.loads(path.read_text())


def check_teacher(teacher, teacher_dir: Path, data) -> None:
    """Refuse a teacher that does not fit the student's data, classes, features or split (one line each)."""
    where = f"distill.teacher {teacher_dir}"
    if teacher.task != "classification" or data.task != "classification":
        raise RecipeError(f"{where}: distillation needs a classifier teacher and student, got a {teacher.task} "
                          f"teacher for {data.task}")
    prep = teacher.preprocessing
    if int(prep["n_features"]) != data.n_features:
        raise RecipeError(f"{where}: the teacher takes {prep['n_features']} features, the student's data has "
                          f"{data.n_features}")
    if [str(c) for c in prep.get("classes") or []] != [str(c) for c in data.classes or []]:
        raise RecipeError(f"{where}: the teacher's classes {list(prep.get('classes') or [])} differ from the "
                          f"student's {list(data.classes or [])}")
    info = teacher_dir / "run.json"
    fingerprint = json.loads(info.read_text()).get("data_fingerprint") if info.is_file() else None
    if fingerprint != data.fingerprint:
        raise RecipeError(f"{where}: the teacher was trained on other data (fingerprint "
                          f"{str(fingerprint)[:12]}, the student's {data.fingerprint[:12]})")
    split = _teacher_split(teacher_dir)
    if "train" not in split or data.rows is None or data.rows.source == "caller":
        raise RecipeError(f"{where}: cannot check that the teacher never trained on the student's validation and "
                          "test rows (one of the two was given as arrays); split the same data set by shares or a column")
    held_out = set(data.rows.val.tolist()) | set(data.rows.test.tolist())
    seen = held_out.intersection(split["train"])
    if seen:
        raise RecipeError(f"{where}: the teacher trained on {len(seen)} of the student's validation/test rows; "
                          "expected a teacher trained on the student's training rows only (the same data.val, "
                          "data.test and data.seed)")


@torch.no_grad()
def teacher_logits(teacher_dir: str | Path, data) -> torch.Tensor:
    """The teacher's logits [N_train + N_val, C] on the student's training then validation rows (MemberData's pool)."""
    from ..trained import load_run  # the run loader imports the model builders, which import this package

    teacher_dir = Path(teacher_dir)
    if not teacher_dir.is_dir():
        raise FileNotFoundError(f"distill.teacher: no run directory {teacher_dir}")
    teacher = load_run(teacher_dir)
    check_teacher(teacher, teacher_dir, data)
    X = torch.cat([data.X_train, data.X_val]).double().numpy()
    raw = data.scaler.inverse(X) if data.scaler is not None else X
    return teacher.outputs(np.asarray(raw)).mean(0).float()


class DistillTargets:
    """The step's loss (H3): each member's alpha T^2 KL to the teacher's softened logits + (1 - alpha) CE."""

    def __init__(self) -> None:
        self.teacher: torch.Tensor | None = None  # [N_pool, C], set by `attach_teacher`

    def begin_epoch(self, trainer) -> bool:
        if self.teacher is None:
            raise RuntimeError("DistillTargets: no teacher logits attached (attach_teacher)")
        return True

    def __call__(self, trainer, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        data, positions = trainer.data, trainer.batch_positions
        rows = positions if data.train_is_prefix else data.train[0][positions]
        return distillation_loss(out, self.teacher[rows], y, temperature=trainer.hyper["distill_temperature"],
                                 alpha=trainer.hyper["distill_alpha"], check=False)


def attach_teacher(trainer, recipe: Recipe, data) -> None:
    """Give the trainer's distillation loss the teacher's logits (a no-op without `distill.teacher`)."""
    if not recipe.distill.active:
        return
    if not trainer.data.shared:
        raise RecipeError("distill: distillation trains on one holdout split; per-member rows (cross-validation) "
                          "would need a teacher per fold, which is not supported")
    trainer.step.loss.teacher = teacher_logits(recipe.distill.teacher, data).to(trainer.device)


def refuse_in_cross_validation(recipe: Recipe) -> None:
    """Cross-validation and search score rows a single teacher may have trained on: refused, with the reason."""
    if recipe.distill.active:
        raise RecipeError("distill.teacher: cross-validation and search are refused with a teacher, which would have "
                          "seen the rows each fold scores (one teacher per fold is not supported yet); distill with "
                          "`tamenet train`, giving the temperatures and alphas as per-member lists")
