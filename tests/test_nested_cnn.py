"""Nested cross-validation of a convolutional model builds the same network in its inner searches and outer fits."""

from __future__ import annotations

import pytest

import tamenet.select.cv as cv
from tamenet.nn import Conv
from tamenet.select import search

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nested_cv_of_a_cnn_on_digits_builds_2d_convolutions_inside_and_outside(monkeypatch):
    shapes = []
    build = cv.build_model

    def recording(cfg, **kwargs):
        model = build(cfg, **kwargs)
        conv = next(m for m in model.modules() if isinstance(m, Conv))
        shapes.append((kwargs.get("input_shape"), conv.weight.dim()))
        return model

    monkeypatch.setattr(cv, "build_model", recording)
    recipe = {"data": {"name": "digits"}, "model": {"kind": "cnn", "channels": [4], "readout": "gap"},
              "train": {"epochs": 1, "batch_size": 128}, "track": {"tensorboard": False, "plots": False, "checkpoint": False}}
    search(recipe, grid=["penalty.l2=0,1e-3"], folds=2, nested=2, refit=False)
    assert len(shapes) >= 4  # two inner searches and two outer fits at least
    assert {s for s, _ in shapes} == {(1, 8, 8)}
    assert {d for _, d in shapes} == {5}  # weights [M, C_out, C_in, kh, kw]: 2-D convolutions everywhere
