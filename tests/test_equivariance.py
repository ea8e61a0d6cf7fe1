"""Equivariance (E4): a geometric transform moves an image and its mask the same way, pixel for pixel; photometric
transforms leave the mask alone; the training step does the same for a dense target, and an fcn trains on it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from sklearn.datasets import load_digits

from tamenet.api import fit
from tamenet.augment.equivariance import GEOMETRIC, augment_with_targets
from tamenet.augment.image import ImageAugment
from tamenet.config import ImageAugmentConfig, Recipe, parse
from tamenet.data.datasets import MASK_THRESHOLD
from tamenet.nn import MemberRandom
from tamenet.train.hyper import member_hyper

pytestmark = pytest.mark.usefixtures("one_thread")


def digits_and_masks(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.from_numpy(load_digits().data[:n]).float().view(n, 1, 8, 8)
    return X, (X > MASK_THRESHOLD).float()


@pytest.mark.parametrize("op,strength", [("hflip", 1.0), ("vflip", 1.0), ("rotate", 40.0), ("shift", 0.3),
                                         ("zoom", 0.3), ("crop", 0.4), ("elastic", 1.5)])
def test_each_geometric_transform_moves_the_mask_as_it_moves_the_image_pixel_for_pixel(op, strength):
    images, masks = digits_and_masks()
    cfg = ImageAugmentConfig(**{op: strength})
    # sampled by nearest neighbours, each output pixel reads one source pixel: the mask of the moved image must
    # be exactly the moved mask
    moved, moved_masks = augment_with_targets(images, masks, cfg, seed=3, step=7, image_mode="nearest")
    assert torch.equal((moved > MASK_THRESHOLD).float(), moved_masks)
    assert not torch.equal(moved_masks, masks)  # the transform did move the masks
    # with bilinear images the masks still move by the same geometry: the same draws give the same masks
    _, again = augment_with_targets(images, masks, cfg, seed=3, step=7)
    assert torch.equal(again, moved_masks)


def test_a_quarter_turn_and_a_flip_turn_the_mask_as_torch_does():
    images, masks = digits_and_masks(16)
    _, flipped = augment_with_targets(images, masks, ImageAugmentConfig(hflip=1.0))
    assert torch.equal(flipped, masks.flip(-1))


@pytest.mark.parametrize("op,strength", [("brightness", 3.0), ("contrast", 0.5), ("blur", 1.0), ("noise", 2.0),
                                         ("erase", 0.4), ("sharpness", 1.0), ("glare", 5.0), ("resolution", 0.5)])
def test_photometric_transforms_leave_the_mask_alone(op, strength):
    images, masks = digits_and_masks()
    moved, same = augment_with_targets(images, masks, ImageAugmentConfig(**{op: strength}), seed=1)
    assert not torch.equal(moved, images)
    assert torch.equal(same, masks)
    assert op not in GEOMETRIC


def test_the_training_step_moves_dense_targets_with_their_images_per_member():
    recipe = parse(Recipe, {"augment": {"image": {"rotate": [0.0, 30.0], "shift": 0.2, "brightness": 2.0}},
                            "seed": [0, 5]})
    random = MemberRandom([0, 5])
    random.step = 2
    trainer = SimpleNamespace(members=2, hyper=member_hyper(recipe), data=SimpleNamespace(task="dense"),
                              model=SimpleNamespace(random=random, image_shape=(1, 8, 8)))
    images, masks = digits_and_masks(32)
    piece = ImageAugment()
    assert piece.begin_epoch(trainer)
    x, y = piece(trainer, images.view(32, 64), masks.view(32, 64))
    assert x.shape == (2, 32, 64) and y.shape == (2, 32, 64)
    for m, seed in enumerate((0, 5)):  # member m as one member alone with its own numbers and seed
        cfg = ImageAugmentConfig(rotate=[0.0, 30.0][m], shift=0.2, brightness=2.0)
        want_x, want_y = augment_with_targets(images, masks, cfg, seed=seed, step=2)
        torch.testing.assert_close(x[m], want_x.view(32, 64), atol=1e-5, rtol=0)
        assert torch.equal(y[m], want_y.view(32, 64))


def test_digits_masks_is_digits_with_each_images_stroke_mask_as_a_dense_target():
    from tamenet.data import list_datasets, load_dataset
    from tamenet.config import DataConfig

    data = load_dataset(DataConfig(name="digits_masks"))
    X = load_digits().data
    assert data.task == "dense" and data.image_shape == (1, 8, 8) and data.classes is None
    assert data.X.shape == (1797, 64) and data.y.shape == (1797, 64) and data.y.dtype.kind == "f"
    assert (data.y == (X > MASK_THRESHOLD)).all() and (data.X == X).all()
    info = next(d for d in list_datasets() if d["name"] == "digits_masks")
    assert (info["n_samples"], info["n_features"], info["task"]) == (1797, 64, "dense")


def test_an_fcn_learns_digit_stroke_masks_with_augmentation_far_above_the_majority_guess():
    result = fit({"data": {"name": "digits_masks", "standardize": False},
                  "model": {"kind": "fcn", "channels": [8, 8], "readout": "flatten"},
                  "augment": {"image": {"rotate": 15.0, "shift": 0.1, "hflip": 0.5, "brightness": 1.0}},
                  "train": {"epochs": 4, "lr": 0.01, "device": "cpu"},
                  "track": {"tensorboard": False, "plots": False, "checkpoint": False}})
    masks = result.data.y_test
    majority = float(torch.maximum(masks.mean(), 1 - masks.mean()))
    assert result.summary["test"]["accuracy"] > majority + 0.15
