"""The training step, built once from the recipe as a short list of small pieces, in this order:

    augmentation       batch, targets -> batch, targets   images (E1, dense targets move along: E4), then mixing
    input transforms   batch -> batch          input noise (D4)
    model              batch -> outputs [M, B, K]
    train loss         outputs, targets -> [M]  hard targets; soft targets when labels are mixed; distillation
    gradient transforms                        tied gradients, penalties, soft sharing, masks, L2-SP, pruning, clipping
    optimizer          lr [M] = base lr x schedule x (member still training)
    projections        after the step           L1's proximal step, constraints, pruning masks
    precision          train.precision other than fp32 (`precision.py`): autocast around the model and the loss,
                       fp16's per-member loss scale (unscaled before the gradient transforms); fp32 is the plain step

A piece is a small object in its own module (`penalties.py`, `constraints.py`, `clipping.py`, `losses.py`,
`input_transforms.py`) with `begin_epoch(trainer) -> bool` (whether it acts this epoch, decided once per epoch, so no
host synchronization happens inside the epoch's steps) and `__call__`: `(trainer, x, y) -> (x, y)` for an
augmentation, `(trainer, x) -> x` for an input transform,
`(trainer, out, y) -> loss [M]` for the loss, `(trainer) -> None` on the `.grad`s for a gradient transform,
`(trainer, lr) -> None` on the weights for a projection. It reads the members' numbers from `trainer.hyper` at each
call (compaction replaces them); a piece that holds per-member state of its own also has `keep_members_(index)`.
The evaluation metric is not part of the step (`losses.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..compress.distillation import DistillTargets
from ..compress.pruning import PruneGradients, PruneWeights
from ..compress.transfer_step import FreezeNorms, L2SPGradients, RestoreFrozen
from ..clipping import ClipGradients
from ..config import Recipe, RecipeError
from ..constraints import MaskGradients, ProjectConstraints, TieGradients
from ..penalties import BatchNormL1Gradients, L1Proximal, PenaltyGradients, SoftSharingGradients
from .input_transforms import InputNoise
from .losses import HardTargets, SoftTargets

if TYPE_CHECKING:
    from .loop import Trainer


@dataclass
class Step:
    """One optimizer step of every member: the pieces in order, and those acting in the current epoch."""

    inputs: list[Any]
    loss: Any
    gradients: list[Any]
    projections: list[Any]
    augment: list[Any] = field(default_factory=list)  # (trainer, x, y) -> (x, y), before the input transforms
    precision: Any = None  # train.precision other than fp32 (`precision.MixedPrecision`); None: the plain step
    _acting: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    @property
    def pieces(self) -> list[Any]:
        return [*self.augment, *self.inputs, self.loss, *self.gradients, *self.projections]

    def begin_epoch(self, trainer: "Trainer") -> None:
        """Ask each piece whether it acts in this epoch (it may also prepare per-epoch values)."""
        self._acting = {
            "augment": [p for p in self.augment if p.begin_epoch(trainer)],
            "inputs": [p for p in self.inputs if p.begin_epoch(trainer)],
            "gradients": [p for p in self.gradients if p.begin_epoch(trainer)],
            "projections": [p for p in self.projections if p.begin_epoch(trainer)],
        }
        self.loss.begin_epoch(trainer)

    def check(self, trainer: "Trainer") -> None:
        """Let each piece that can refuse a recipe do so when the trainer is built, before any file is written."""
        for piece in self.pieces:
            if hasattr(piece, "check"):
                piece.check(trainer)

    def keep_members_(self, index: torch.Tensor) -> None:
        for piece in [*self.pieces, *([self.precision] if self.precision is not None else [])]:
            if hasattr(piece, "keep_members_"):
                piece.keep_members_(index)

    def __call__(self, trainer: "Trainer", x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train every member on its batch (x, y) with learning rates lr [M]; returns (outputs, loss [M])."""
        if self.precision is not None:
            return self._mixed(trainer, x, y, lr)
        x, y = self._inputs(trainer, x, y)
        out = self._forward(trainer, x)
        loss = self.loss(trainer, out, y)
        self._clear_gradients(trainer)
        loss.sum().backward()
        self._update(trainer, lr)
        return out, loss

    def _mixed(self, trainer: "Trainer", x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same step with the forward pass and the loss at `train.precision` (see `precision.py`); at fp16 the
        loss scaled per member, the gradients unscaled before the gradient transforms, overflowing members skipped."""
        from .precision import restore_members_, snapshot_members

        mixed = self.precision
        x, y = self._inputs(trainer, x, y)
        with mixed.forward_context():
            out = self._forward(trainer, x)
            loss = self.loss(trainer, out, y)
        out, loss = out.float(), loss.float()
        self._clear_gradients(trainer)
        scaler = mixed.scaler
        (loss.sum() if scaler is None else scaler.scale_loss(loss)).backward()
        finite = scaler.unscale_(trainer.roles) if scaler is not None else None
        skips = finite is not None and not bool(finite.all())  # one host read per fp16 step, as GradScaler's
        saved = snapshot_members(trainer) if skips else None
        self._update(trainer, lr)
        if saved is not None:
            restore_members_(saved, ~finite)
        if scaler is not None:
            scaler.update_(finite)
        return out, loss

    def _inputs(self, trainer: "Trainer", x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch after augmentation and the input transforms."""
        for piece in self._acting["augment"]:
            x, y = piece(trainer, x, y)
        for transform in self._acting["inputs"]:
            x = transform(trainer, x)
        return x, y

    @staticmethod
    def _forward(trainer: "Trainer", x: torch.Tensor) -> torch.Tensor:
        parallel = getattr(trainer, "parallel", None)  # data-parallel training (tamenet.dist): the forward through DDP
        return trainer.model(x) if parallel is None else parallel.forward(trainer, x)

    @staticmethod
    def _clear_gradients(trainer: "Trainer") -> None:
        for role in trainer.roles:
            role.param.grad = None

    def _update(self, trainer: "Trainer", lr: torch.Tensor) -> None:
        """Gradient transforms, the optimizer's step at lr [M], then the projections."""
        for transform in self._acting["gradients"]:
            transform(trainer)
        trainer.optimizer.step(lr)
        for projection in self._acting["projections"]:
            projection(trainer, lr)


def build_step(recipe: Recipe, *, image_shape: tuple[int, ...] | None = None) -> Step:
    """The recipe's step. Adding a regularizer is adding its piece here (and its `PerMember` field in `config.py`).
    `image_shape`: the rows' image shape [C, H, W] for augmentation (default: the model's `input_shape`)."""
    from ..augment import augment_pieces  # the augmentation pieces the recipe asks for (none by default)

    clip = recipe.train.clip
    augment = augment_pieces(recipe, image_shape=image_shape)
    mixes = recipe.augment.mix.kind != "none"
    if mixes and recipe.distill.active:
        raise RecipeError(f"augment.mix: the teacher's logits belong to unmixed rows; expected augment.mix.kind 'none' "
                          f"with distill.teacher, got {recipe.augment.mix.kind!r}")
    transfers = recipe.train.init_from is not None
    return Step(
        augment=augment,
        inputs=[InputNoise(), *([FreezeNorms()] if transfers else [])],
        loss=DistillTargets() if recipe.distill.active else SoftTargets() if mixes else HardTargets(),
        gradients=[
            TieGradients(),
            PenaltyGradients(),
            BatchNormL1Gradients(),
            SoftSharingGradients(),
            MaskGradients(),
            *([L2SPGradients()] if transfers else []),
            *([PruneGradients()] if recipe.prune.active else []),
            *([ClipGradients(clip.by, clip.eps)] if clip.by != "none" else []),
        ],
        projections=[L1Proximal(), ProjectConstraints(), *([PruneWeights()] if recipe.prune.active else []),
                     *([RestoreFrozen()] if transfers else [])],
    )
