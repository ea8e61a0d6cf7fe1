"""Hard constraints on weights (C5): projections applied after every optimizer step.

    max-norm      w_u <- w_u * min(1, c / ||w_u||) for every unit u's incoming weight vector w_u
                  (c per member; c = 0 leaves a member unconstrained)
    non-negative  w <- max(w, 0)
    masks         w <- w * mask, and the gradient too, so no optimizer state builds up where mask = 0
    tied weights  one value shared exactly: the copies' gradients are summed into the first layer of
                  the tie, which alone is stepped; the others take its value (or transpose) after the step

Each projection is a pure in-place function of one parameter (`ParamRole`); `Constraints` holds
the recipe's constraints resolved against a model's parameters, and the loop calls it at three
points: `tie_gradients_` after backward, `mask_gradients_` before clipping, `project_` after the step.

References: Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
JMLR 2014 (max-norm); LeCun et al., "Backpropagation applied to handwritten zip code recognition",
Neural Computation 1989 (local connectivity and shared weights); Press & Wolf, "Using the output
embedding to improve language models", EACL 2017 (tied transposed weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ConstraintsConfig, RecipeError
from .models import ParamRole
from .registry import lookup


def _member_view(c: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return c.to(p.device, p.dtype).view(-1, *([1] * (p.dim() - 1)))


@torch.no_grad()
def max_norm_(role: ParamRole, c: torch.Tensor) -> None:
    """`w_u <- w_u * min(1, c / ||w_u||)` over the fan-in axes of each unit; c [M], 0 = no constraint.

    Units whose norm is at most c are left bit-for-bit untouched; the others end at norm c (to rounding).
    """
    p = role.per_member(role.param.data)
    norms = torch.linalg.vector_norm(p, dim=role.fan_in_dims, keepdim=True)
    c = _member_view(c, p)
    p.mul_(torch.where((c > 0) & (norms > c), c / norms, torch.ones_like(norms)))


@torch.no_grad()
def non_negative_(role: ParamRole) -> None:
    """`w <- max(w, 0)`: the projection onto the non-negative orthant."""
    role.param.data.clamp_min_(0.0)


def banded_mask(n_in: int, n_out: int, band: int) -> torch.Tensor:
    """Boolean [n_in, n_out]: unit j sees the 2 * band + 1 inputs nearest to its centre.

    Unit j's centre in input coordinates is `c_j = (j + 1/2) * n_in / n_out - 1/2` (units spread over
    the inputs' span, so equal widths give c_j = j), and it sees inputs i with
    `c_j - band - 1/2 <= i < c_j + band + 1/2`: exactly 2 band + 1 inputs (fewer at the edges); for
    equal widths `|i - j| <= band`. Computed in integers (times 2 n_out), so no rounding decides.
    """
    i = torch.arange(n_in).view(-1, 1)
    j = torch.arange(n_out).view(1, -1)
    centre2 = (2 * j + 1) * n_in - n_out  # 2 n_out c_j
    half2 = (2 * band + 1) * n_out  # 2 n_out (band + 1/2)
    return (centre2 - half2 <= 2 * n_out * i) & (2 * n_out * i < centre2 + half2)


def _two_axes(role: ParamRole, what: str) -> tuple[int, int]:
    """(fan-in axis, unit axis) of a weight whose member view is [M, a, b]; an error otherwise."""
    dims = role.per_member(role.param).dim()
    if dims != 3 or len(role.fan_in_dims) != 1:
        shape = tuple(role.per_member(role.param).shape[1:])
        raise RecipeError(f"{what}: expected a dense weight matrix (one unit axis, one input axis), '{role.name}' has shape {shape}")
    fan = role.fan_in_dims[0]
    return fan, 3 - fan


def layer_mask(role: ParamRole, *, band: int | None = None, file: str | Path | None = None, where: str = "mask") -> torch.Tensor:
    """A 0/1 mask shaped like one member of `role` (`band`: see `banded_mask`; `file`: a `.npy` array in the stored layout)."""
    member_shape = tuple(role.per_member(role.param).shape[1:])
    if band is not None:
        fan, _ = _two_axes(role, f"{where}.band")
        mask = banded_mask(member_shape[fan - 1], member_shape[2 - fan], band)
        mask = mask if fan == 1 else mask.T
    else:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{where}.file: mask file not found: {path}")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise RecipeError(f"{where}.file: {path} is not a NumPy .npy array ({err})") from None
        if tuple(array.shape) != member_shape:
            layout = "[in, out]" if role.stacked and role.fan_in_dims == (1,) else "[out, in, ...]"
            raise RecipeError(
                f"{where}.file: expected an array of shape {member_shape} ({layout}, as '{role.name}' is stored), "
                f"got {tuple(array.shape)}"
            )
        if not np.isin(array, (0, 1)).all():
            raise RecipeError(f"{where}.file: expected only 0 and 1 (or booleans) in {path}, got other values")
        mask = torch.from_numpy(array.astype(bool))
    return mask.to(role.param.device, role.param.dtype)


@dataclass(frozen=True)
class Tie:
    """Parameters that share one value: `leader` is trained, each follower is set to it (or its transpose)."""

    leader: ParamRole
    followers: tuple[ParamRole, ...]
    transpose: bool = False

    def _in_leader_layout(self, t: torch.Tensor) -> torch.Tensor:
        return t.transpose(-2, -1) if self.transpose else t

    @torch.no_grad()
    def sum_gradients_(self) -> None:
        """The leader's gradient becomes the sum of all copies' gradients; the followers' are dropped (not stepped)."""
        total = self.leader.param.grad
        for f in self.followers:
            g = f.param.grad
            if g is not None:
                g = self._in_leader_layout(g)
                total = g.clone() if total is None else total.add_(g)
            f.param.grad = None
        self.leader.param.grad = total

    @torch.no_grad()
    def copy_(self) -> None:
        """Every follower takes the leader's value exactly."""
        for f in self.followers:
            f.param.data.copy_(self._in_leader_layout(self.leader.param.data))


@dataclass(frozen=True)
class Constraints:
    """The recipe's constraints resolved against a model's parameters; empty when the recipe has none."""

    max_norm: tuple[ParamRole, ...] = ()
    non_negative: tuple[ParamRole, ...] = ()
    masks: tuple[tuple[ParamRole, torch.Tensor], ...] = ()
    ties: tuple[Tie, ...] = ()

    @property
    def followers(self) -> dict[str, str]:
        """Tied parameters that are not trained themselves -> the parameter whose value they take."""
        return {f.name: t.leader.name for t in self.ties for f in t.followers}

    def tie_gradients_(self) -> None:
        for tie in self.ties:
            tie.sum_gradients_()

    @torch.no_grad()
    def mask_gradients_(self) -> None:
        for role, mask in self.masks:
            if role.param.grad is not None:
                role.per_member(role.param.grad).mul_(mask)

    @torch.no_grad()
    def project_(self, max_norm: torch.Tensor | None = None) -> None:
        """Masks, non-negativity, then max-norm with c [M] (None: skip); then the tied copies take their values."""
        for role, mask in self.masks:
            role.per_member(role.param.data).mul_(mask)
        for role in self.non_negative:
            non_negative_(role)
        if max_norm is not None:
            for role in self.max_norm:
                max_norm_(role, max_norm)
        for tie in self.ties:
            tie.copy_()


def _names(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecipeError(f"{where}: expected a list of layer names, got {value!r}")
    return value


def _find(table: dict[str, ParamRole], name: str, where: str, followers: dict[str, str]) -> ParamRole:
    if name in followers:
        raise RecipeError(
            f"{where}: '{name}' is tied to '{followers[name]}' and takes its value; name '{followers[name]}' instead"
        )
    try:
        return lookup(table, name, f"layer in {where}")
    except ValueError as err:
        raise RecipeError(str(err)) from None


def _resolve_ties(cfg: ConstraintsConfig, table: dict[str, ParamRole]) -> tuple[Tie, ...]:
    ties, seen = [], set()
    for k, tie in enumerate(cfg.tied):
        where = f"constraints.tied[{k}].layers"
        if len(tie.layers) < 2 or len(set(tie.layers)) != len(tie.layers):
            raise RecipeError(f"{where}: expected at least two different layer names, got {tie.layers}")
        roles = [_find(table, name, where, {}) for name in tie.layers]
        for name in tie.layers:
            if name in seen:
                raise RecipeError(f"{where}: '{name}' is already tied in another group; merge the two groups")
            seen.add(name)
        lead = tuple(roles[0].param.shape)
        for role in roles[1:]:
            shape = tuple(role.param.shape)
            if tie.transpose:
                if roles[0].per_member(roles[0].param).dim() != 3 or shape != (*lead[:-2], lead[-1], lead[-2]):
                    raise RecipeError(
                        f"{where}: with transpose, '{role.name}' must have the transposed shape of the matrix "
                        f"'{roles[0].name}' {lead}; got {shape}"
                    )
            elif shape != lead:
                raise RecipeError(
                    f"{where}: tied layers need the same shape: '{roles[0].name}' has {lead}, '{role.name}' has {shape}"
                    " (set transpose: true to tie a matrix to its transpose)"
                )
        ties.append(Tie(roles[0], tuple(roles[1:]), tie.transpose))
    return tuple(ties)


def resolve_constraints(cfg: ConstraintsConfig, roles: list[ParamRole]) -> Constraints:
    """Check the recipe's layer names against the model's parameters and build its `Constraints`."""
    every = {r.name: r for r in roles}
    weights = {r.name: r for r in roles if r.role == "weight"}
    ties = _resolve_ties(cfg, every)
    followers = {f.name: t.leader.name for t in ties for f in t.followers}
    untied = {n: r for n, r in weights.items() if n not in followers}

    if cfg.max_norm_layers is None:
        max_norm = tuple(untied.values())
    else:
        max_norm = tuple(_find(weights, n, "constraints.max_norm_layers", followers) for n in cfg.max_norm_layers)

    raw = cfg.non_negative
    if isinstance(raw, bool):
        non_negative = tuple(untied.values()) if raw else ()
    else:
        names = _names(raw, "constraints.non_negative (true, false or a list of layer names)")
        non_negative = tuple(_find(every, n, "constraints.non_negative", followers) for n in names)

    masks, masked = [], set()
    for k, spec in enumerate(cfg.masks):
        where = f"constraints.masks[{k}]"
        role = _find(weights, spec.layer, f"{where}.layer", followers)
        if (spec.band is None) == (spec.file is None):
            raise RecipeError(f"{where}: expected exactly one of 'band' (neighbours on each side) or 'file' (a .npy mask)")
        if role.name in masked:
            raise RecipeError(f"{where}.layer: '{role.name}' already has a mask; give one mask per layer")
        masked.add(role.name)
        masks.append((role, layer_mask(role, band=spec.band, file=spec.file, where=where)))
    return Constraints(max_norm, non_negative, tuple(masks), ties)


# ----------------------------------------------------------------- pieces of the training step (`tamenet.train.step`)
class TieGradients:
    """Gradient transform (C5): a tied group's gradients summed into its leader (its copies train through it)."""

    def begin_epoch(self, trainer) -> bool:
        return bool(trainer.constraints.ties)

    def __call__(self, trainer) -> None:
        trainer.constraints.tie_gradients_()


class MaskGradients:
    """Gradient transform (C5): masked connections get no gradient."""

    def begin_epoch(self, trainer) -> bool:
        return bool(trainer.constraints.masks)

    def __call__(self, trainer) -> None:
        trainer.constraints.mask_gradients_()


class ProjectConstraints:
    """Projection (C5) after the optimizer step: masks, non-negativity, max-norm with c [M] of the members still
    training (0 for the others: their weights stay put), then the tied copies take their leader's value."""

    def begin_epoch(self, trainer) -> bool:
        self.max_norm = trainer.max_norm_of(trainer.epoch_active)
        c = trainer.constraints
        return bool(c.masks or c.non_negative or c.ties) or self.max_norm is not None

    def __call__(self, trainer, lr: torch.Tensor) -> None:
        trainer.constraints.project_(self.max_norm)
