"""Equivariance (E4): one random geometric transform applied to an input and its dense target together.

When the answer moves with the input (a segmentation mask, a keypoint map), augmenting the image alone would
teach the wrong answer; the target must take the same flip, affine warp and elastic displacement, pixel for
pixel. Photometric transforms (brightness, blur, erasing, ...) change what the pixels look like, not where
things are, and leave the target alone. The training step does this itself for task `dense`
(`image.ImageAugment`); this module is the same code as a plain function for images and masks.
"""

from __future__ import annotations

import torch

from ..config import ImageAugmentConfig
from .image import IMAGE_OPS, augment_as_member

GEOMETRIC = tuple(name for name, op in IMAGE_OPS.items() if op.kind == "geometric")
"""The transforms that move a dense target with the image."""


def augment_with_targets(
    images: torch.Tensor,
    targets: torch.Tensor,
    cfg: ImageAugmentConfig,
    *,
    seed: int = 0,
    step: int = 0,
    image_mode: str = "bilinear",
    target_mode: str = "nearest",
) -> tuple[torch.Tensor, torch.Tensor]:
    """images [N, C, H, W] and targets [N, T, H, W] through the recipe's image augmentation, as one member with
    `seed` at `step` draws it: geometric transforms move both by the same parameters (targets sampled by
    `target_mode`, nearest by default so a 0/1 mask stays 0/1), photometric ones act on the images only."""
    if targets.shape[0] != images.shape[0] or targets.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"augment_with_targets: expected targets [N, T, H, W] matching images {list(images.shape)}, "
                         f"got {list(targets.shape)}")
    out, moved = augment_as_member(images, cfg, seed=seed, step=step, targets=targets.to(images.dtype),
                                   target_mode=target_mode, image_mode=image_mode)
    return out, moved.to(targets.dtype)
