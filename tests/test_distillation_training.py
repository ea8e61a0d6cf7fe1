"""Distillation in training (H3): teacher logits on the right rows, the contract, and teachers refused."""

import numpy as np
import pytest
import torch

import tamenet.compress.distillation as distillation
from tamenet.api import fit
from tamenet.config import RecipeError
from tamenet.select import cross_validate
from tamenet.trained import load_run

from test_training import QUIET, _assert_population_equals_separate_runs, _with

KEEP = {**QUIET, "checkpoint": True}
TEACHER = {"name": "teacher", "data": {"name": "digits"}, "model": {"widths": [32]},
           "train": {"epochs": 4, "batch_size": 128, "lr": 0.01}, "seed": [0, 1], "track": KEEP}
STUDENT = {"data": {"name": "digits"}, "model": {"widths": [8]},
           "train": {"epochs": 3, "batch_size": 128, "lr": 0.01}, "seed": 0, "track": QUIET}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("distill") / "teacher"
    fit(TEACHER, out=path)
    return str(path)


def test_the_loss_sees_the_teachers_averaged_logits_of_each_batchs_rows(teacher, monkeypatch):
    checked = []
    real = distillation.distillation_loss
    model = load_run(teacher)

    def spy(out, teacher_logits, y, **kw):
        trainer = spy.trainer
        rows = trainer.batch_positions  # holdout: positions are rows of the pool
        X = trainer.data.X[0][rows].double().numpy()
        raw = spy.scaler.inverse(X)
        expected = model.outputs(raw).mean(0).float()  # both teacher members, averaged
        torch.testing.assert_close(teacher_logits, expected, rtol=1e-5, atol=1e-5)
        checked.append(len(rows))
        return real(out, teacher_logits, y, **kw)

    original_attach = distillation.attach_teacher

    def attach(trainer, recipe, data):
        spy.trainer, spy.scaler = trainer, data.scaler
        original_attach(trainer, recipe, data)

    monkeypatch.setattr(distillation, "distillation_loss", spy)
    monkeypatch.setattr("tamenet.api.attach_teacher", attach)
    fit(_with(STUDENT, **{"distill.teacher": teacher, "train.epochs": 1}))
    assert sum(checked) == 1005  # every training row of one epoch, in its batches


def test_alpha_zero_trains_like_the_plain_student(teacher):
    plain = fit(STUDENT)
    distilled = fit(_with(STUDENT, **{"distill.teacher": teacher, "distill.alpha": 0.0}))
    np.testing.assert_allclose([r["train_loss"] for r in distilled.history], [r["train_loss"] for r in plain.history],
                               rtol=1e-5)
    soft = fit(_with(STUDENT, **{"distill.teacher": teacher, "distill.alpha": 0.9}))
    assert [r["val_loss"] for r in soft.history] != [r["val_loss"] for r in plain.history]


def test_a_population_of_temperatures_and_alphas_equals_separate_runs(teacher):
    values = [(1.0, 0.5), (4.0, 0.9), (20.0, 0.3)]
    base = _with(STUDENT, **{"distill.teacher": teacher})
    _assert_population_equals_separate_runs(
        _with(base, **{"distill.temperature": [t for t, _ in values], "distill.alpha": [a for _, a in values]}),
        [_with(base, **{"distill.temperature": t, "distill.alpha": a}) for t, a in values],
    )


@pytest.mark.parametrize("changes, words", [
    ({"data.seed": 7}, "the teacher trained on"),  # another split: the teacher saw this run's held-out rows
    ({"data.name": "wine"}, "the teacher takes 64 features, the student's data has 13"),
    ({"data.val": 0.1}, "the teacher trained on"),  # a smaller validation part: some teacher rows are held out here
])
def test_teachers_that_do_not_fit_are_refused_by_name(teacher, changes, words):
    with pytest.raises(RecipeError, match=words):
        fit(_with(STUDENT, **{"distill.teacher": teacher, **changes}))


def test_a_missing_teacher_and_cross_validation_are_refused(teacher, tmp_path):
    with pytest.raises(FileNotFoundError, match="distill.teacher: no run directory"):
        fit(_with(STUDENT, **{"distill.teacher": str(tmp_path / "nothing")}))
    with pytest.raises(RecipeError, match="cross-validation and search are refused with a teacher"):
        cross_validate(_with(STUDENT, **{"distill.teacher": teacher}), folds=2)


@pytest.mark.parametrize("key, value, words", [
    ("distill.temperature", 0.0, "expected a value > 0.0"),
    ("distill.alpha", 1.5, "expected a value <= 1.0"),
])
def test_bad_temperature_and_alpha_are_refused(teacher, key, value, words):
    with pytest.raises(RecipeError, match=words):
        fit(_with(STUDENT, **{"distill.teacher": teacher, key: value}))
