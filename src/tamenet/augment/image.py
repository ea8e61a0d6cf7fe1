"""Image augmentation of training batches (E1): every transform batched over members and images, on the device.

Each member's strengths are its own numbers (`augment.image.*`, tensors [M] in `trainer.hyper`), and its random
parameters come from its own counter-based stream (`MemberRandom.uniform` / `normal` at stream
`IMAGE_STREAM + 64 * op`), so member m transforms its batch exactly as it would alone. kornia's augmentation
modules draw from torch's global generator, so they cannot give that; we draw the parameters and call kornia's
functional ops (`warp_affine`, `adjust_hue`, `adjust_saturation`, `gaussian_blur2d`) with them; brightness,
contrast and sharpness are a line each of our own, since kornia's clip to [0, 1] and training rows are standardized.

Order: flips -> one affine warp (crop/fragment, zoom, rotation, shift) -> elastic -> resolution -> brightness,
contrast, hue, saturation, sharpness, blur, channel shuffle, glare, noise -> random erasing. Geometric transforms
move a dense target too (`move_targets`); photometric ones leave it alone.

References: Simard et al., ICDAR 2003 (elastic); Zhong et al., "Random erasing data augmentation", AAAI 2020;
Shorten & Khoshgoftaar, "A survey on image data augmentation for deep learning", J. Big Data 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import ImageAugmentConfig, RecipeError
from . import geometry

IMAGE_STREAM = 2_000
"""First random stream of image augmentation; op i draws from IMAGE_STREAM + 64 * i (input noise uses 1,000)."""


@dataclass(frozen=True)
class ImageOp:
    """One transform: its kind (geometric ones move dense targets), whether it needs colour, uniforms per image."""

    kind: str
    colour: bool
    draws: int
    what: str


IMAGE_OPS: dict[str, ImageOp] = {
    "hflip": ImageOp("geometric", False, 1, "mirror left-right with probability hflip"),
    "vflip": ImageOp("geometric", False, 1, "mirror up-down with probability vflip"),
    "crop": ImageOp("geometric", False, 4, "a random fragment of side 1 - U(0, crop), resized to the image"),
    "zoom": ImageOp("geometric", False, 2, "scale U(1 - zoom, 1 + zoom) about the centre"),
    "rotate": ImageOp("geometric", False, 2, "turn by U(-rotate, rotate) degrees about the centre"),
    "shift": ImageOp("geometric", False, 3, "move by U(-shift, shift) of the width and height"),
    "elastic": ImageOp("geometric", False, 1, "a smooth random displacement field, RMS elastic pixels"),
    "resolution": ImageOp("photometric", False, 1, "down-sample to 1 - resolution of the side, up-sample back"),
    "brightness": ImageOp("photometric", False, 2, "add U(-brightness, brightness)"),
    "contrast": ImageOp("photometric", False, 2, "scale about the image mean by U(1 - contrast, 1 + contrast)"),
    "hue": ImageOp("photometric", True, 2, "turn the hue by U(-hue, hue) of a full turn (RGB)"),
    "saturation": ImageOp("photometric", True, 2, "scale the saturation by U(1 - s, 1 + s) (RGB)"),
    "sharpness": ImageOp("photometric", False, 2, "sharpen: blend factor 1 + U(0, sharpness) against a smoothed copy"),
    "blur": ImageOp("photometric", False, 2, "Gaussian blur of sigma U(0, blur) pixels"),
    "channel_shuffle": ImageOp("photometric", True, 1, "permute the channels at random with probability p"),
    "glare": ImageOp("photometric", False, 5, "add a bright Gaussian patch of height U(0, glare)"),
    "noise": ImageOp("photometric", False, 1, "add N(0, noise^2) to every pixel"),
    "erase": ImageOp("photometric", False, 5, "set a random box of area share U(0.02, erase) to 0"),
}
"""The image transforms by recipe name (`augment.image.<name>`), in the order they are applied."""

_FIELDS = {f.name for f in fields(ImageAugmentConfig)}
if set(IMAGE_OPS) | {"p"} != _FIELDS:  # the recipe section and this table are one list of names
    raise RuntimeError(f"IMAGE_OPS and ImageAugmentConfig differ: {sorted(_FIELDS ^ (set(IMAGE_OPS) | {'p'}))}")
_SELF_PROBABILITY = ("hflip", "vflip", "channel_shuffle")  # their strength is the probability itself


def hyper_name(op: str) -> str:
    """The op's hyper-parameter name in the loop (`trainer.hyper`)."""
    return f"aug_{op}"


def image_shape_of(shape, where: str = "augment.image") -> tuple[int, int, int]:
    """[C, H, W] of the rows, or a one-line error when they are not images."""
    if shape is None or len(shape) != 3:
        raise RecipeError(f"{where}: expected rows that are images [C, H, W] (model.input_shape or the data set's "
                          f"image shape), got {list(shape) if shape is not None else 'no image shape'}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def check_ops(active: list[str], shape: tuple[int, int, int]) -> None:
    """Refuse transforms the images cannot take: colour ops on grey images, sharpness below 3x3 pixels."""
    channels, height, width = shape
    for name in active:
        if IMAGE_OPS[name].colour and channels != 3:
            raise RecipeError(f"augment.image.{name}: a colour transform needs 3-channel (RGB) images, got "
                              f"{channels} channel{'s' if channels != 1 else ''} (shape {list(shape)}); set it to 0")
    if "sharpness" in active and min(height, width) < 3:
        raise RecipeError(f"augment.image.sharpness: needs images of at least 3x3 pixels, got {height}x{width}")


class Draws:
    """Per-image random numbers of a batch [M, B]: member m's from its own streams, flattened to [M * B, ...].
    `uniform(op, k)` [N, k] in [0, 1) (`MemberRandom.uniform`); `normal(op, shape)` [N, *shape] ~ N(0, 1)."""

    def __init__(self, random, batch: int, device: torch.device) -> None:
        self.random, self.batch, self.device = random, batch, device

    def uniform(self, op: str, k: int) -> torch.Tensor:
        stream = IMAGE_STREAM + 64 * list(IMAGE_OPS).index(op)
        return self.random.uniform(stream, (self.batch, k), device=self.device, rows=True).reshape(-1, k)

    def normal(self, op: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Per-pixel draws are many: member m's come from a torch generator seeded by (seed_m, step, stream), one
        call per member (never per image), several times cheaper than the hash stream and as independent of the
        population around a member."""
        from ..nn import mix_seed

        stream = IMAGE_STREAM + 64 * list(IMAGE_OPS).index(op) + 1
        out = torch.empty(len(self.random.seeds), self.batch, *shape, device=self.device)
        shard = (self.random.row_offset,) if self.random.row_offset else ()  # a data-parallel rank: its own draws
        for m, seed in enumerate(self.random.seeds):
            generator = torch.Generator(device=self.device).manual_seed(mix_seed(seed, self.random.step, stream, *shard))
            out[m].normal_(generator=generator)
        return out.reshape(-1, *shape)


def _col(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1, 1)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(x - mean) * factor + mean, the mean over each image's pixels and channels (no clipping: rows are
    standardized, not in [0, 1])."""
    mean = x.mean((-3, -2, -1), keepdim=True)
    return (x - mean) * _col(factor) + mean


def sharpen(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's sharpness: smooth = x filtered by [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 inside (the border pixels
    kept), out = smooth + factor (x - smooth); factor 1 is the image, above 1 sharpens. kornia's `sharpness` clips
    to [0, 1], which standardized rows are not in."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return smooth + _col(factor) * (x - smooth)


def resample(x: torch.Tensor, side: float) -> torch.Tensor:
    """Down-sample by area averaging to `side` of the height and width (at least 1 pixel), then bilinearly back."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * side)), max(1, round(w * side))), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def erase_masks(u: torch.Tensor, share: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes [N, 1, H, W] (True inside) of area share U(0.02, share) (U(0, share) below 0.02), aspect ratio
    log-uniform in [0.3, 3.3], placed uniformly (random erasing, Zhong et al. 2020)."""
    low = torch.clamp(share, max=0.02)
    area = (low + (share - low) * u[:, 0]) * (height * width)
    ratio = torch.exp(math.log(0.3) + u[:, 1] * (math.log(3.3) - math.log(0.3)))
    h = torch.sqrt(area * ratio).clamp(max=height)
    w = torch.sqrt(area / ratio).clamp(max=width)
    top, left = u[:, 2] * (height - h), u[:, 3] * (width - w)
    ys = torch.arange(height, device=u.device, dtype=u.dtype).view(1, -1, 1)
    xs = torch.arange(width, device=u.device, dtype=u.dtype).view(1, 1, -1)
    inside = ((ys >= top.view(-1, 1, 1)) & (ys < (top + h).view(-1, 1, 1))
              & (xs >= left.view(-1, 1, 1)) & (xs < (left + w).view(-1, 1, 1)))
    return inside.unsqueeze(1)


def augment_batch(
    x: torch.Tensor,
    strength: dict[str, torch.Tensor],
    p: torch.Tensor,
    draws: Draws,
    active: list[str],
    *,
    targets: torch.Tensor | None = None,
    target_mode: str = "nearest",
    image_mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply the `active` transforms to images x [N, C, H, W] (N = M * B, member-major), strength[name] [N] and the
    share p [N] per image. `targets` [N, T, H, W] (dense targets, e.g. masks) follow every geometric transform with
    the same parameters, sampled by `target_mode`; photometric transforms leave them alone."""
    n, c, h, w = x.shape
    on = set(active)

    def fires(op: str, u: torch.Tensor) -> torch.Tensor:
        return u < (strength[op] if op in _SELF_PROBABILITY else p)

    def move(fn: Callable[[torch.Tensor, str], torch.Tensor]) -> None:
        nonlocal x, targets
        x = fn(x, image_mode)
        if targets is not None:
            targets = fn(targets, target_mode)

    for axis, op in ((-1, "hflip"), (-2, "vflip")):
        if op in on:
            fire = fires(op, draws.uniform(op, 1)[:, 0])
            move(lambda t, _mode, fire=fire, axis=axis: geometry.flip(t, fire, axis=axis))
    if on & {"crop", "zoom", "rotate", "shift"}:
        zero, one = torch.zeros(n, device=x.device, dtype=x.dtype), torch.ones(n, device=x.device, dtype=x.dtype)
        angle, scale, shift = zero, one, torch.zeros(n, 2, device=x.device, dtype=x.dtype)
        fragment = centre = None
        size = torch.tensor([w - 1, h - 1], device=x.device, dtype=x.dtype)
        if "crop" in on:
            u = draws.uniform("crop", 4)
            fragment = torch.where(fires("crop", u[:, 0]), 1.0 - strength["crop"] * u[:, 1], one)
            centre = size / 2 + (1.0 - fragment).unsqueeze(1) * (u[:, 2:4] - 0.5) * size
        if "zoom" in on:
            u = draws.uniform("zoom", 2)
            scale = torch.where(fires("zoom", u[:, 0]), 1.0 + strength["zoom"] * (2 * u[:, 1] - 1), one)
        if "rotate" in on:
            u = draws.uniform("rotate", 2)
            angle = torch.where(fires("rotate", u[:, 0]), strength["rotate"] * (2 * u[:, 1] - 1), zero)
        if "shift" in on:
            u = draws.uniform("shift", 3)
            amount = strength["shift"].unsqueeze(1) * (2 * u[:, 1:3] - 1) * torch.tensor([w, h], device=x.device)
            shift = torch.where(fires("shift", u[:, 0]).unsqueeze(1), amount, shift)
        matrices = geometry.affine_matrices(h, w, angle=angle, scale=scale, shift=shift, fragment=fragment,
                                            fragment_centre=centre)
        moving = _col((angle != 0) | (scale != 1) | (shift != 0).any(1) | (fragment != 1 if fragment is not None
                                                                           else torch.zeros_like(angle, dtype=torch.bool)))
        # images that no transform moves stay bit for bit (a warp by the identity rounds in the last bit)
        move(lambda t, mode: torch.where(moving, geometry.warp(t, matrices, mode=mode), t))
    if "elastic" in on:
        fire = fires("elastic", draws.uniform("elastic", 1)[:, 0])
        alpha = torch.where(fire, strength["elastic"], torch.zeros_like(strength["elastic"]))
        field = geometry.elastic_field(draws.normal("elastic", (2, h, w)), alpha, sigma=max(h, w) / 8)
        move(lambda t, mode: torch.where(_col(alpha > 0), geometry.displace(t, field, mode=mode), t))
    if "resolution" in on:  # one size per distinct strength (members), never a loop over images
        fire = fires("resolution", draws.uniform("resolution", 1)[:, 0])
        levels = strength["resolution"]
        out = x
        for level in torch.unique(levels[fire]).tolist() if bool(fire.any()) else []:
            pick = fire & (levels == level)
            out = torch.where(_col(pick), resample(x, 1.0 - level), out)
        x = out
    if "brightness" in on:
        u = draws.uniform("brightness", 2)
        x = x + _col(torch.where(fires("brightness", u[:, 0]), strength["brightness"] * (2 * u[:, 1] - 1), 0.0))
    if "contrast" in on:
        u = draws.uniform("contrast", 2)
        x = contrast(x, torch.where(fires("contrast", u[:, 0]), 1.0 + strength["contrast"] * (2 * u[:, 1] - 1), 1.0))
    if "hue" in on:
        from kornia.enhance import adjust_hue  # imported on use

        u = draws.uniform("hue", 2)
        x = adjust_hue(x, torch.where(fires("hue", u[:, 0]), strength["hue"] * (2 * u[:, 1] - 1) * (2 * math.pi), 0.0))
    if "saturation" in on:
        from kornia.enhance import adjust_saturation

        u = draws.uniform("saturation", 2)
        factor = torch.where(fires("saturation", u[:, 0]), 1.0 + strength["saturation"] * (2 * u[:, 1] - 1), 1.0)
        x = adjust_saturation(x, factor)
    if "sharpness" in on:
        u = draws.uniform("sharpness", 2)
        x = sharpen(x, torch.where(fires("sharpness", u[:, 0]), 1.0 + strength["sharpness"] * u[:, 1], 1.0))
    if "blur" in on:
        from kornia.filters import gaussian_blur2d

        u = draws.uniform("blur", 2)
        sigma = torch.where(fires("blur", u[:, 0]), strength["blur"] * u[:, 1], 0.0).clamp_min(1e-3)
        size = 2 * ((min(h, w) - 1) // 2) + 1
        blurred = gaussian_blur2d(x, (size, size), sigma.unsqueeze(1).expand(n, 2), border_type="reflect")
        x = torch.where(_col(sigma > 1e-3), blurred, x)
    if "channel_shuffle" in on:
        u = draws.uniform("channel_shuffle", 1 + c)
        perm = torch.where(fires("channel_shuffle", u[:, 0]).unsqueeze(1), u[:, 1:].argsort(1),
                           torch.arange(c, device=x.device))
        x = torch.gather(x, 1, perm.view(n, c, 1, 1).expand_as(x))
    if "glare" in on:
        u = draws.uniform("glare", 5)
        ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, -1, 1)
        xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, -1)
        cy, cx = (u[:, 1] * (h - 1)).view(-1, 1, 1), (u[:, 2] * (w - 1)).view(-1, 1, 1)
        radius = ((0.15 + 0.35 * u[:, 3]) * max(h, w)).view(-1, 1, 1)
        height = torch.where(fires("glare", u[:, 0]), strength["glare"] * u[:, 4], 0.0).view(-1, 1, 1)
        x = x + (height * torch.exp(-((ys - cy).square() + (xs - cx).square()) / (2 * radius.square()))).unsqueeze(1)
    if "noise" in on:
        fire = fires("noise", draws.uniform("noise", 1)[:, 0])
        x = x + _col(torch.where(fire, strength["noise"], 0.0)) * draws.normal("noise", (c, h, w))
    if "erase" in on:
        u = draws.uniform("erase", 5)
        boxes = erase_masks(u[:, 1:], strength["erase"], h, w) & _col(fires("erase", u[:, 0]))
        x = x.masked_fill(boxes, 0.0)
    return x, targets


class ImageAugment:
    """The training step's image augmentation: `(trainer, x, y) -> (x, y)` on each training batch.

    Rows [B, F] (shared) or [M, B, F] are viewed as images through `model.input_shape` (the data set's image
    shape); a dense target [.., H*W] (task `dense`) moves with every geometric transform. Which transforms act
    is decided once per epoch (any member's strength above 0).
    """

    def __init__(self, image_shape: tuple[int, ...] | None = None) -> None:
        self.image_shape = image_shape
        self.active: list[str] = []

    def check(self, trainer) -> None:
        """Refuse rows that are not images, or colour ops on grey ones, when the trainer is built (before any file)."""
        self.begin_epoch(trainer)

    def begin_epoch(self, trainer) -> bool:
        hyper = trainer.hyper
        self.active = [op for op in IMAGE_OPS if bool((hyper[hyper_name(op)] > 0).any())]
        if not self.active:
            return False
        if not bool((hyper["aug_p"] > 0).any()) and not set(self.active) & set(_SELF_PROBABILITY):
            return False
        model = trainer.model
        shape = self.image_shape or getattr(model, "image_shape", None) or getattr(model, "input_shape", None)
        self.shape = image_shape_of(shape)
        check_ops(self.active, self.shape)
        return True

    def __call__(self, trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        members = trainer.members
        if x.dim() == 2:  # a batch shared by all members gains the member axis: each member augments its own copy
            x = x.unsqueeze(0).expand(members, *x.shape)
        batch = x.shape[1]
        per_image = {op: trainer.hyper[hyper_name(op)].repeat_interleave(batch) for op in self.active}
        p = trainer.hyper["aug_p"].repeat_interleave(batch)
        draws = Draws(trainer.model.random, batch, x.device)
        images = x.reshape(members * batch, *self.shape)
        dense = trainer.data.task == "dense"
        targets = None
        if dense:
            yy = y.unsqueeze(0).expand(members, *y.shape) if y.dim() == 2 else y
            targets = yy.reshape(members * batch, -1, *self.shape[1:]).to(images.dtype)
        images, targets = augment_batch(images, per_image, p, draws, self.active, targets=targets)
        x = images.reshape(members, batch, -1)
        if dense:
            y = targets.reshape(members, batch, -1).to(y.dtype)
        return x, y


def augment_as_member(images: torch.Tensor, cfg: ImageAugmentConfig, *, seed: int = 0, step: int = 0,
                      targets: torch.Tensor | None = None, target_mode: str = "nearest",
                      image_mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor | None]:
    """`augment_batch` of images [N, C, H, W] (and dense `targets`) by the recipe's strengths, as one member with
    `seed` at `step` draws them: the same code path as training, for the preview and `augment_with_targets`."""
    from ..nn import MemberRandom

    active = [op for op in IMAGE_OPS if _scalar(getattr(cfg, op), op) > 0]
    check_ops(active, image_shape_of(tuple(images.shape[1:])))
    random = MemberRandom([seed])
    random.step = step
    n = images.shape[0]
    strength = {op: torch.full((n,), _scalar(getattr(cfg, op), op), device=images.device) for op in active}
    p = torch.full((n,), _scalar(cfg.p, "p"), device=images.device)
    return augment_batch(images, strength, p, Draws(random, n, images.device), active, targets=targets,
                         target_mode=target_mode, image_mode=image_mode)


def augment_images(images: torch.Tensor, cfg: ImageAugmentConfig, *, seed: int = 0, step: int = 0) -> torch.Tensor:
    """The recipe's image augmentation of a stack of images [N, C, H, W], as one member with `seed` at `step`
    would draw it (`tamenet preview`; the same code path as training)."""
    return augment_as_member(images, cfg, seed=seed, step=step)[0]


def _scalar(value, name: str) -> float:
    """One member's number (a list of equal numbers counts as one)."""
    if isinstance(value, list):
        if len(set(value)) != 1:
            raise RecipeError(f"augment.image.{name}: this draws one member; expected one number, got {value}")
        value = value[0]
    return float(value)
