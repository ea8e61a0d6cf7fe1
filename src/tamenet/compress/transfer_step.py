"""Transfer learning in training (H4): start from another run's layers, freeze some, pull toward the rest.

`train.init_from: RUN_DIR` copies the source run's layers into every member before training: each
parameter and the statistics of its layer (BatchNorm's running mean and variance), checked by name
and shape; the output layer is left at its fresh initialization when the classes differ. Then

- *hard* transfer, `train.freeze: K`: the first K weight layers (with their biases and norms) keep
  the source's values exactly: restored after every step (so no update, decay, penalty or projection
  moves them by a bit), and their BatchNorm layers normalize with the source's running statistics;
- *soft* transfer: everything trains, the copied layers at `train.copied_lr` times the learning rate;
- *L2-SP* (Li et al. 2018): `penalty.l2_sp` = alpha pulls the copied weights toward the source's,
  `penalty.l2_sp_head` = beta shrinks the new head toward 0 (`compress/transfer.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import Recipe, RecipeError
from .transfer import add_l2_sp_gradients_


@dataclass
class TransferPlan:
    """What a run took from its source: the copied state (by name), the frozen names, the roles L2-SP acts on."""

    source: dict[str, torch.Tensor]  # name -> the source's values [M, ...] (broadcast to the members)
    frozen: tuple[str, ...]
    frozen_norms: tuple[nn.Module, ...]
    copied_weights: tuple  # (ParamRole, source tensor) of the copied weight layers
    head_weights: tuple  # ParamRoles of the weight layers not copied (the new head)
    copied_roles: tuple  # every copied parameter's role (their learning rate scales with copied_lr)


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def plan_transfer(model, source_state: dict[str, torch.Tensor], *, same_classes: bool, freeze: int,
                  where: str = "train.init_from") -> TransferPlan:
    """Which of `model`'s tensors come from `source_state` (checked by name and shape) and which are frozen."""
    roles = model.param_roles()
    weight_layers = 1 + max(r.layer for r in roles if r.role == "weight")
    head_layer = weight_layers - 1
    if freeze > weight_layers - 1:
        raise RecipeError(f"train.freeze: the model has {weight_layers} weight layers and the last one must train; "
                          f"expected at most {weight_layers - 1}, got {freeze}")
    copied = [r for r in roles if same_classes or r.layer != head_layer]
    modules = {_module_of(r.name) for r in copied}
    members = model.members
    state = model.member_tensors()
    own = {r.name for r in roles}  # a layer's statistics: the other member tensors of a module with copied parameters
    names = [n for n in state if n in {r.name for r in copied} or (_module_of(n) in modules and n not in own)]
    source: dict[str, torch.Tensor] = {}
    for name in names:
        if name not in source_state:
            raise RecipeError(f"{where}: the source has no layer '{name}' (its layers: {sorted(source_state)[:8]}...); "
                              "expected a source with the same architecture for the copied layers")
        value, mine = source_state[name], state[name]
        if value.shape[1:] != mine.shape[1:] or value.shape[0] not in (1, members):
            raise RecipeError(f"{where}: layer '{name}' is {list(value.shape[1:])} per member in the source and "
                              f"{list(mine.shape[1:])} here (source members {value.shape[0]}, here {members})")
        source[name] = value.to(mine.dtype).expand(members, *mine.shape[1:]).clone()
    frozen_modules = {_module_of(r.name) for r in copied if r.layer < freeze}
    frozen = tuple(n for n in names if _module_of(n) in frozen_modules)
    frozen_norms = tuple(m for prefix, m in model.named_modules()
                         if prefix in frozen_modules and hasattr(m, "running_mean"))
    copied_names = {r.name for r in copied}
    return TransferPlan(
        source=source, frozen=frozen, frozen_norms=frozen_norms,
        copied_weights=tuple((r, source[r.name]) for r in copied if r.role == "weight"),
        head_weights=tuple(r for r in roles if r.role == "weight" and r.name not in copied_names),
        copied_roles=tuple(copied),
    )


def _source_run(path: str):
    from ..trained import load_run  # imports the model builders, which import this package

    if not Path(path).is_dir():
        raise FileNotFoundError(f"train.init_from: no run directory {path}")
    return load_run(path)


@torch.no_grad()
def apply_transfer(model, recipe: Recipe, data) -> TransferPlan | None:
    """Copy the source run's layers into `model` (every member) before training; None without `train.init_from`."""
    path = recipe.train.init_from
    if path is None:
        if recipe.train.freeze:
            raise RecipeError(f"train.freeze: freezing needs layers to copy; expected train.init_from, got freeze "
                              f"{recipe.train.freeze} without it")
        return None
    if not hasattr(model, "param_roles") or type(model).__name__ == "Wrapped":
        raise RecipeError("train.init_from: a user's own module starts from its own weights; load them into it instead")
    source = _source_run(path)
    if int(source.preprocessing["n_features"]) != data.n_features:
        raise RecipeError(f"train.init_from {path}: the source takes {source.preprocessing['n_features']} features, "
                          f"this data has {data.n_features}")
    if source.task != data.task:
        raise RecipeError(f"train.init_from {path}: the source is a {source.task} run, this one {data.task}")
    same = [str(c) for c in source.preprocessing.get("classes") or []] == [str(c) for c in data.classes or []]
    source_state = {k: v.detach() for k, v in source.model.member_tensors().items()}
    plan = plan_transfer(model, source_state, same_classes=same, freeze=recipe.train.freeze)
    state = model.member_tensors()
    for name, value in plan.source.items():
        state[name].copy_(value.to(state[name].device))
    return plan


def attach_transfer(trainer, plan: TransferPlan | None) -> None:
    """Hand the plan to the step's pieces and scale the copied layers' learning rate by `train.copied_lr`."""
    trainer.transfer = plan
    if plan is None:
        return
    plan.source = {k: v.to(trainer.device) for k, v in plan.source.items()}
    plan.copied_weights = tuple((r, plan.source[r.name]) for r, _ in plan.copied_weights)
    scale = trainer.hyper["copied_lr"]
    if bool((scale != 1).any()):
        trainer.optimizer.scale_lr({r.name: scale for r in plan.copied_roles})


class FreezeNorms:
    """Input-side piece (H4): the frozen layers' BatchNorms normalize with the source's running statistics."""

    def begin_epoch(self, trainer) -> bool:
        plan = getattr(trainer, "transfer", None)
        return plan is not None and bool(plan.frozen_norms)

    def __call__(self, trainer, x: torch.Tensor) -> torch.Tensor:
        for norm in trainer.transfer.frozen_norms:
            norm.eval()  # the loop sets train mode each epoch; this holds for the epoch's steps
        return x


class L2SPGradients:
    """Gradient transform (H4): alpha (w - w_source) on copied weights, beta w on the new head (Li et al. 2018)."""

    def begin_epoch(self, trainer) -> bool:
        plan = getattr(trainer, "transfer", None)
        return plan is not None and bool((trainer.hyper["l2_sp"] > 0).any() or (trainer.hyper["l2_sp_head"] > 0).any())

    def __call__(self, trainer) -> None:
        plan = trainer.transfer
        add_l2_sp_gradients_([(r.param, s.view_as(r.param)) for r, s in plan.copied_weights],
                             [r.param for r in plan.head_weights],
                             alpha=trainer.hyper["l2_sp"], beta=trainer.hyper["l2_sp_head"])


class RestoreFrozen:
    """Projection (H4), last: the frozen tensors back to the source's values, bit for bit. It also keeps the
    plan's source values in step with compaction (present whenever the run transfers, acting when it freezes)."""

    def begin_epoch(self, trainer) -> bool:
        plan = getattr(trainer, "transfer", None)
        if plan is None or not plan.frozen:
            return False
        state = trainer.model.member_tensors()
        self.pairs = [(state[name], plan.source[name]) for name in plan.frozen]
        self.plan = plan
        return True

    @torch.no_grad()
    def __call__(self, trainer, lr) -> None:
        for tensor, value in self.pairs:
            tensor.copy_(value)

    def keep_members_(self, index: torch.Tensor) -> None:
        plan = getattr(self, "plan", None)
        if plan is not None:
            plan.source = {k: v[index.to(v.device)].clone() for k, v in plan.source.items()}
            plan.copied_weights = tuple((r, plan.source[r.name]) for r, _ in plan.copied_weights)


def refuse_transfer_in_cross_validation(recipe: Recipe) -> None:
    if recipe.train.init_from is not None:
        raise RecipeError("train.init_from: cross-validation and search with a source run are not supported yet "
                          "(each fold would need the check that the source never saw its scored rows); "
                          "compare transfer settings as per-member lists in one `tamenet train`")
