"""Data augmentation (E1-E5): transforms of training batches only, each member by its own numbers and seed.

The recipe's `augment:` section names what it wants (`augment.image`, `augment.mix`; text and audio plug in
beside them). Each modality registers one line in `MODALITIES`: its name and the function that builds its
step pieces from the recipe, `pieces(recipe, *, image_shape) -> list`; a piece has `begin_epoch(trainer) -> bool`
and `(trainer, x, y) -> (x, y)`, and runs on the training batch after it is gathered and before the model
(`train.step`). Validation, test, early-stopping and scored cross-validation rows never pass through a piece.

Modalities that act before featurization (text strings, see `augment.text`) build no step piece and are not
listed here; they are called by their data loader on each epoch's training rows.
"""

from __future__ import annotations

from typing import Any, Callable

from ..config import Recipe


def image_pieces(recipe: Recipe, *, image_shape: tuple[int, ...] | None = None) -> list[Any]:
    """`ImageAugment` when any image strength is above 0 for some member, else nothing."""
    from dataclasses import fields

    cfg = recipe.augment.image
    values = [getattr(cfg, f.name) for f in fields(cfg) if f.name != "p"]
    if not any(max(v) > 0 if isinstance(v, list) else v > 0 for v in values):
        return []
    from .image import ImageAugment

    return [ImageAugment(image_shape)]


def mix_pieces(recipe: Recipe, *, image_shape: tuple[int, ...] | None = None) -> list[Any]:
    """`Mix` (mixup or cutmix) when `augment.mix.kind` names one."""
    if recipe.augment.mix.kind == "none":
        return []
    from .mix import Mix

    return [Mix(recipe.augment.mix.kind, image_shape)]


MODALITIES: dict[str, Callable[..., list[Any]]] = {
    "image": image_pieces,
    "mix": mix_pieces,  # last: it mixes the augmented images
}
"""Modality -> builder of its step pieces, in the order they act. A new modality adds one line here."""


def augment_pieces(recipe: Recipe, *, image_shape: tuple[int, ...] | None = None) -> list[Any]:
    """Every augmentation piece the recipe asks for, in `MODALITIES` order (an empty list without augmentation)."""
    return [piece for build in MODALITIES.values() for piece in build(recipe, image_shape=image_shape)]
