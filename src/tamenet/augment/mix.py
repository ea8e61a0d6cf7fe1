"""Mixing pairs of training images and their labels (E1): mixup and cutmix, per member, on the device.

    mixup:  x' = lam x_i + (1 - lam) x_j,   y' = lam onehot(y_i) + (1 - lam) onehot(y_j),   lam ~ Beta(a, a)
    cutmix: x' = x_i with a box of x_j pasted in, the box's area share 1 - lam; y' as above with lam the share
            of x_i that is left (the box is clipped at the border, and lam follows the pasted area exactly)

j is member m's own random permutation of its batch; each image is mixed with probability p (lam = 1 otherwise).
Class labels become `MixedLabels` (y_i, y_j, lam), which the loss piece `train.losses.SoftTargets` turns into the
soft targets [M, B, K] above (K from the model's outputs); regression targets mix like the inputs.
Randomness: member m's stream `MIX_STREAM + k` (`MemberRandom`), so a population mixes as its separate runs do.

References: Zhang et al., "mixup: Beyond empirical risk minimization", ICLR 2018; Yun et al., "CutMix:
Regularization strategy to train strong classifiers with localizable features", ICCV 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import RecipeError
from .image import image_shape_of

MIX_STREAM = 4_000
"""First random stream of mixing (image augmentation uses 2,000-3,300)."""

MIX_KINDS = ("mixup", "cutmix")
GAMMA_TRIES = 8  # candidates per draw; all 8 rejected has probability below 1e-9 (then the mean is used)


def gamma(random, stream: int, alpha: torch.Tensor, shape: tuple[int, ...], *, device) -> torch.Tensor:
    """Gamma(alpha_m, 1) draws [M, *shape] from member m's streams, by Marsaglia & Tsang's method ("A simple
    method for generating gamma variables", ACM TOMS 2000) with a fixed number of vectorized candidates; for
    alpha < 1, Gamma(alpha) = Gamma(alpha + 1) U^(1 / alpha)."""
    a = alpha.view(-1, *([1] * (len(shape) + 1))).to(torch.float32)
    boost = a < 1
    d = torch.where(boost, a + 1, a) - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    z = random.normal(stream, (*shape, GAMMA_TRIES), device=device)
    u = random.uniform(stream + 1, (*shape, GAMMA_TRIES), device=device)
    v = (1.0 + c * z) ** 3
    ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * z.square() + d - d * v + d * torch.log(v.clamp_min(1e-30)))
    first = torch.where(ok, torch.arange(GAMMA_TRIES, device=device), GAMMA_TRIES).argmin(-1, keepdim=True)
    value = torch.gather(d * v, -1, first).squeeze(-1)
    value = torch.where(ok.any(-1), value, d.squeeze(-1))
    extra = random.uniform(stream + 2, shape, device=device).clamp_min(1e-30)
    power = torch.where(boost.squeeze(-1), extra ** (1.0 / a.squeeze(-1)), torch.ones_like(extra))
    return value * power


def beta(random, stream: int, alpha: torch.Tensor, shape: tuple[int, ...], *, device) -> torch.Tensor:
    """Beta(alpha_m, alpha_m) [M, *shape] as X / (X + Y) with X, Y ~ Gamma(alpha_m)."""
    x = gamma(random, stream, alpha, shape, device=device)
    y = gamma(random, stream + 8, alpha, shape, device=device)
    return x / (x + y).clamp_min(1e-30)


@dataclass(frozen=True)
class MixedLabels:
    """Labels of mixed images: own class [M, B], partner's class [M, B] and the own share lam [M, B]."""

    own: torch.Tensor
    other: torch.Tensor
    lam: torch.Tensor

    def soft(self, classes: int) -> torch.Tensor:
        """The soft targets lam onehot(own) + (1 - lam) onehot(other), [M, B, K]."""
        lam = self.lam.unsqueeze(-1)
        return lam * F.one_hot(self.own, classes).to(lam.dtype) + (1 - lam) * F.one_hot(self.other, classes).to(lam.dtype)


def mixup(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lam x + (1 - lam) x[partner], per member: x [M, B, F], partner [M, B] indices, lam [M, B]."""
    other = torch.gather(x, 1, partner.unsqueeze(-1).expand_as(x))
    return lam.unsqueeze(-1) * x + (1 - lam.unsqueeze(-1)) * other


def cutmix_boxes(u: torch.Tensor, lam: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes [M, B, H, W] (True inside) of side shares sqrt(1 - lam), centred at U(0, 1) of the image, clipped."""
    side = torch.sqrt(1.0 - lam)
    cy, cx = u[..., 0] * height, u[..., 1] * width
    h, w = side * height, side * width
    ys = torch.arange(height, device=u.device, dtype=u.dtype) + 0.5
    xs = torch.arange(width, device=u.device, dtype=u.dtype) + 0.5
    inside_y = (ys >= (cy - h / 2).unsqueeze(-1)) & (ys < (cy + h / 2).unsqueeze(-1))
    inside_x = (xs >= (cx - w / 2).unsqueeze(-1)) & (xs < (cx + w / 2).unsqueeze(-1))
    return inside_y.unsqueeze(-1) & inside_x.unsqueeze(-2)


def cutmix(x: torch.Tensor, partner: torch.Tensor, boxes: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, B, C*H*W] with each image's box [M, B, H, W] taken from its partner; returns (x', lam'), lam' the
    share of pixels left of the image itself (the label weight)."""
    m, b = x.shape[:2]
    images = x.reshape(m, b, *shape)
    other = torch.gather(x, 1, partner.unsqueeze(-1).expand_as(x)).reshape(m, b, *shape)
    mixed = torch.where(boxes.unsqueeze(2), other, images)
    lam = 1.0 - boxes.flatten(2).to(x.dtype).mean(-1)
    return mixed.reshape(m, b, -1), lam


class Mix:
    """The training step's mixing piece `(trainer, x, y) -> (x, y')`: y' `MixedLabels` (classification) or mixed
    values [M, B] (regression)."""

    def __init__(self, kind: str, image_shape: tuple[int, ...] | None = None) -> None:
        if kind not in MIX_KINDS:
            raise RecipeError(f"augment.mix.kind: unknown value '{kind}' (valid: none, {', '.join(MIX_KINDS)})")
        self.kind, self.image_shape = kind, image_shape

    def begin_epoch(self, trainer) -> bool:
        if trainer.data.task == "dense":
            raise RecipeError("augment.mix: mixing labels needs classification or regression targets, got task 'dense'")
        if self.kind == "cutmix":
            model = trainer.model
            shape = self.image_shape or getattr(model, "image_shape", None) or getattr(model, "input_shape", None)
            self.shape = image_shape_of(shape, "augment.mix")
        return bool((trainer.hyper["mix_p"] > 0).any())

    def __call__(self, trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, "torch.Tensor | MixedLabels"]:
        members, random = trainer.members, trainer.model.random
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(members, *x.shape)
        if y.dim() == 1:
            y = y.unsqueeze(0).expand(members, *y.shape)
        batch, device = x.shape[1], x.device
        partner = random.uniform(MIX_STREAM, (batch,), device=device).argsort(1)
        lam = beta(random, MIX_STREAM + 10, trainer.hyper["mix_alpha"], (batch,), device=device)
        fire = random.uniform(MIX_STREAM + 30, (batch,), device=device) < trainer.hyper["mix_p"].unsqueeze(1)
        lam = torch.where(fire, lam, torch.ones_like(lam))
        if self.kind == "mixup":
            x = mixup(x, partner, lam)
        else:
            u = random.uniform(MIX_STREAM + 40, (batch, 2), device=device)
            x, lam = cutmix(x, partner, cutmix_boxes(u, lam, *self.shape[1:]), self.shape)
        if trainer.data.task == "classification":
            return x, MixedLabels(y, torch.gather(y, 1, partner), lam)
        return x, lam * y + (1 - lam) * torch.gather(y, 1, partner)
