"""Pruning in the training step (H1): masks as member state, and the two step pieces that keep them.

Each pruned weight layer gets a 0/1 mask [M, ...] held by `PruneMasks`, a submodule of the population
whose buffers are declared member state: the best-epoch snapshot, compaction (successive halving),
chunking and checkpoints carry them like weights. Masks only ever lose ones: a weight once pruned
stays pruned (its magnitude is 0, so it ranks lowest again; random masks keep their scores).

- `PruneGradients` (a gradient transform, before clipping): a pruned weight gets no gradient, so
  no optimizer state builds up for it and clipping sees only the live weights;
- `PruneWeights` (a projection): at the start of each epoch of the schedule it computes the
  epoch's masks (`prune.py`), then after every optimizer step it sets the pruned weights to 0,
  which also undoes momentum and Adam's moments built before the prune.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import PruneConfig, RecipeError
from .prune import magnitude_masks, random_masks


def mask_name(weight: str) -> str:
    """The buffer name of a weight's mask (state-dict names may not hold dots)."""
    return weight.replace(".", "__")


class PruneMasks(nn.Module):
    """The pruning masks of a population, one buffer [M, ...] per pruned weight, all ones until pruned."""

    def __init__(self, shapes: dict[str, torch.Size]) -> None:
        super().__init__()
        self.weights = tuple(shapes)
        for name, shape in shapes.items():
            self.register_buffer(mask_name(name), torch.ones(shape))
        self.member_buffers = tuple(mask_name(n) for n in self.weights)
        self.fixed = False  # True: the masks were given (a lottery-ticket round); the schedule leaves them as they are

    def mask(self, weight: str) -> torch.Tensor:
        return getattr(self, mask_name(weight))

    def forward(self, *args, **kwargs):  # pragma: no cover - holds state, computes nothing
        raise TypeError("PruneMasks holds masks; it is not a layer")


def pruned_weights(model: nn.Module, cfg: PruneConfig) -> list:
    """The weight roles pruning acts on: `prune.layers` by name, or every weight layer."""
    weights = [r for r in model.param_roles() if r.role == "weight"]
    if cfg.layers is None:
        return weights
    by_name = {r.name: r for r in weights}
    unknown = [n for n in cfg.layers if n not in by_name]
    if unknown:
        raise RecipeError(f"prune.layers: unknown weight layer(s) {unknown}; expected names from {sorted(by_name)}")
    return [by_name[n] for n in cfg.layers]


def attach_prune_masks(model: nn.Module, cfg: PruneConfig | None) -> nn.Module:
    """Give the population its masks (all ones) when the recipe prunes; a no-op otherwise."""
    if cfg is None or not cfg.active:
        return model
    roles = pruned_weights(model, cfg)
    model.pruning = PruneMasks({r.name: r.per_member(r.param).shape for r in roles})
    return model


def schedule_share(epoch: int, cfg: PruneConfig) -> float | None:
    """The share of each member's target sparsity that epoch `epoch` (0-based) prunes to; None: no new mask then."""
    if epoch < cfg.start_epoch or (cfg.end_epoch is None and epoch != cfg.start_epoch):
        return None
    if cfg.end_epoch is None:
        return 1.0
    if epoch > cfg.end_epoch:
        return None
    progress = (epoch - cfg.start_epoch) / (cfg.end_epoch - cfg.start_epoch)
    return 1.0 - (1.0 - progress) ** 3  # Zhu & Gupta 2017 with s_i = 0: s_t = s_f (1 - (1 - progress)^3)


class PruneGradients:
    """Gradient transform (H1): pruned weights get no gradient."""

    def begin_epoch(self, trainer) -> bool:
        if not hasattr(trainer.model, "pruning"):
            return False
        self.roles = pruned_weights(trainer.model, trainer.recipe.prune)
        return trainer.state.epoch >= trainer.recipe.prune.start_epoch

    @torch.no_grad()
    def __call__(self, trainer) -> None:
        masks = trainer.model.pruning
        for role in self.roles:
            if role.param.grad is not None:
                role.per_member(role.param.grad).mul_(masks.mask(role.name))


class PruneWeights:
    """Projection (H1): the epoch's new masks at its start, pruned weights set to 0 after every step."""

    def begin_epoch(self, trainer) -> bool:
        if not hasattr(trainer.model, "pruning"):
            return False
        cfg = trainer.recipe.prune
        self.roles = pruned_weights(trainer.model, cfg)
        share = schedule_share(trainer.state.epoch, cfg)
        if share is not None and share > 0 and not trainer.model.pruning.fixed:
            # the recipe's shares back from the loop's float32 tensor (0.9 is 0.89999998 there: floor(0.9 n) would miss one)
            target = torch.round(trainer.hyper["prune_sparsity"].double().cpu() * 1e6) / 1e6
            self.update_masks_(trainer, target * share)
        return trainer.state.epoch >= cfg.start_epoch

    @torch.no_grad()
    def update_masks_(self, trainer, sparsity: torch.Tensor) -> None:
        """New masks at `sparsity` [M] from the members' current (masked) weights, then applied."""
        cfg, model, roles = trainer.recipe.prune, trainer.model, self.roles
        weights = [r.per_member(r.param.detach()) * model.pruning.mask(r.name) for r in roles]
        if cfg.method == "magnitude":
            keeps = magnitude_masks(weights, sparsity, scope=cfg.scope)
        else:
            keeps = random_masks(weights, sparsity, seeds=model.random.seeds)
        for role, keep in zip(roles, keeps):
            mask = model.pruning.mask(role.name)
            mask.mul_(keep.to(mask.device, mask.dtype))
        self(trainer, None)

    @torch.no_grad()
    def __call__(self, trainer, lr: torch.Tensor | None) -> None:
        masks = trainer.model.pruning
        for role in self.roles:
            role.per_member(role.param.data).mul_(masks.mask(role.name))


def pruning_summary(model: nn.Module) -> list[dict] | None:
    """Per member: the share of pruned weights over the pruned layers (None when the model is not pruned)."""
    if not hasattr(model, "pruning"):
        return None
    masks = [model.pruning.mask(n) for n in model.pruning.weights]
    total = sum(m[0].numel() for m in masks)
    pruned = sum((m == 0).reshape(m.shape[0], -1).sum(1) for m in masks)
    return [{"sparsity": float(p) / total} for p in pruned.tolist()]
