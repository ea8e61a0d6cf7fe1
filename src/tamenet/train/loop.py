"""The one training loop: every member of a population steps together, each by its own numbers.

    batch (per member, or shared) -> [input noise] -> model -> loss [M] + penalties [M]
    -> backward -> [tied gradients summed] -> penalty gradients -> [masks] -> clip per member
    -> optimizer step (lr [M] x schedule x still-training mask) -> L1 proximal step
    -> constraints (masks, non-negative, max-norm, tied copies)
    -> end of epoch: validation, early stopping, best weights, callbacks

A member whose loss turns NaN or infinite is frozen without disturbing the others; a population
of one stops. Ctrl-C ends the loop cleanly and the run is finished with what it has.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..config import Recipe, RecipeError
from ..constraints import resolve_constraints
from ..feature_selection import select_inputs_
from ..models import Population
from ..nn import MemberRandom, mix_seed
from ..penalties import (
    add_penalty_gradients_, add_soft_sharing_gradients_, l1_penalty, l1_proximal_, l2_penalty, penalized,
    sharing_sets, soft_sharing_penalty,
)
from ..clipping import CLIPPERS
from .hyper import member_hyper
from .losses import TASK_METRIC, evaluate, finish_metric, member_loss, member_score_sum
from .member_data import MemberData
from .optim import make_optimizer
from .schedule import lr_factor

INPUT_NOISE_STREAM = 1_000
"""Random stream of the input noise (dropout layers use small stream numbers)."""


@dataclass
class EpochRecord:
    """What one epoch produced: one metrics row per member, and which members improved."""

    epoch: int
    rows: list[dict]
    improved: list[bool]
    stopped: list[bool]
    diverged: list[bool]


@dataclass
class LoopState:
    """Everything the loop needs to resume: per-member early-stopping state and the best weights."""

    epoch: int = 0
    step: int = 0
    best_value: list[float] = field(default_factory=list)
    best_epoch: list[int] = field(default_factory=list)
    wait: list[int] = field(default_factory=list)
    stopped: list[bool] = field(default_factory=list)
    diverged_at: list[int | None] = field(default_factory=list)
    interrupted: bool = False
    wall_time: float = 0.0


def _monitor(recipe: Recipe, task: str) -> tuple[str, float]:
    """(column, sign): sign +1 when lower is better."""
    monitor = recipe.train.early_stopping.monitor
    metric = TASK_METRIC[task]
    valid = {"val_loss": 1.0, f"val_{metric}": -1.0 if metric == "accuracy" else 1.0}
    if monitor not in valid:
        raise RecipeError(
            f"train.early_stopping.monitor: '{monitor}' is not reported for a {task} task (valid: {', '.join(valid)})"
        )
    return monitor, valid[monitor]


def batch_size_of(recipe: Recipe, n_train: int) -> int:
    size = recipe.train.batch_size
    if size == "full":
        return n_train
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RecipeError(f"train.batch_size: expected a positive integer or 'full', got {size!r}")
    return min(size, n_train)


def batch_orders(seeds: list[int], n: int, epoch: int) -> torch.Tensor:
    """This epoch's sample order: [n] when all members share a seed (one shared batch), else [M, n]."""
    unique = sorted(set(seeds))
    orders = {
        s: torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(s, epoch, 104729))) for s in unique
    }
    if len(unique) == 1:
        return orders[unique[0]]
    return torch.stack([orders[s] for s in seeds])


class Trainer:
    """Trains a population on its members' rows as the recipe says; `run()` returns when every member is done."""

    def __init__(
        self,
        model: Population,
        data: MemberData,
        recipe: Recipe,
        *,
        callbacks: list[Callable[[EpochRecord, "Trainer"], None]] | None = None,
        keep_resume_state: bool = False,
    ) -> None:
        self.model, self.data, self.recipe = model, data, recipe
        self.keep_resume_state = keep_resume_state
        self.callbacks = list(callbacks or [])
        self.members = model.members
        self.hyper = member_hyper(recipe)
        if len(self.hyper["lr"]) != self.members:
            raise RecipeError(f"the recipe describes {len(self.hyper['lr'])} members but the model has {self.members}")
        self.roles = model.param_roles()
        self.constraints = resolve_constraints(recipe.constraints, self.roles)
        followers = self.constraints.followers  # tied copies: trained and penalized through their leader
        self.penalized = [(r, s) for r, s in penalized(self.roles, recipe.penalty) if r.name not in followers]
        self.sharing = sharing_sets(recipe.penalty.sharing_groups, self.roles)
        for group in self.sharing:
            for r in group.roles:
                if r.name in followers:
                    raise RecipeError(
                        f"penalty.sharing_groups: '{r.name}' is tied to '{followers[r.name]}'; name '{followers[r.name]}' instead"
                    )
        self.constraints.project_(self._max_norm(torch.ones(self.members)))  # C5 holds from the initial weights on
        tcfg = recipe.train
        self.optimizer = make_optimizer(tcfg.optimizer, self.roles, self.hyper, eps=tcfg.eps, nesterov=tcfg.nesterov)
        self.monitor, self.sign = _monitor(recipe, data.task)
        self.metric = TASK_METRIC[data.task]
        if data.members != self.members:
            raise ValueError(f"the data holds rows for {data.members} members but the model has {self.members}")
        self.target_std = data.target_std
        self.batch_size = batch_size_of(recipe, data.n_train)
        self.validation = data.validation() if data.has_val else None
        self.state = LoopState(
            best_value=[math.inf] * self.members,
            best_epoch=[0] * self.members,
            wait=[0] * self.members,
            stopped=[False] * self.members,
            diverged_at=[None] * self.members,
        )
        if bool((self.hyper["input_features"] != 0).any()):  # C6: each member's k best inputs, from its training rows
            select_inputs_(model, data, self.hyper["input_features"].tolist())
        self.best_state = self._snapshot()
        self.keeps_best = True  # False: nobody restores the best epoch's weights (cross-validation without
        # restore_best), so they are not copied at every improvement (a pass over every weight per epoch)
        self.history: list[dict] = []
        self.member_ids = list(range(self.members))  # original member numbers, after compaction too

    def _max_norm(self, active: torch.Tensor) -> torch.Tensor | None:
        """Max-norm's c [M] for the members still training (0 for the others: their weights stay put); None when off."""
        c = self.hyper["max_norm"]
        return c * (active > 0) if bool((c > 0).any()) else None

    # ----------------------------------------------------------------- member state
    def _member_tensors(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers that have the member axis (everything a member owns)."""
        out = {}
        for name, t in [*self.model.named_parameters(), *self.model.named_buffers()]:
            if t.dim() >= 1 and t.shape[0] == self.members and not name.endswith("num_batches_tracked"):
                out[name] = t
        return out

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().clone() for name, t in self._member_tensors().items()}

    @torch.no_grad()
    def _keep_best(self, improved: torch.Tensor) -> None:
        if not self.keeps_best:
            return
        for name, t in self._member_tensors().items():
            mask = improved.view(-1, *([1] * (t.dim() - 1)))
            self.best_state[name] = torch.where(mask, t.detach(), self.best_state[name])

    @torch.no_grad()
    def restore_best(self) -> None:
        """Load every member's weights from its best epoch (G2)."""
        if not self.keeps_best:
            raise RuntimeError("this trainer does not keep the best epoch's weights (keeps_best is False)")
        for name, t in self._member_tensors().items():
            t.copy_(self.best_state[name])

    def active(self) -> torch.Tensor:
        s = self.state
        return torch.tensor([not (a or d is not None) for a, d in zip(s.stopped, s.diverged_at)])

    # ----------------------------------------------------------------- one epoch
    def _train_epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        data, tcfg, model = self.data, self.recipe.train, self.model
        seeds = model.random.seeds
        n = data.n_train
        order = batch_orders(seeds, n, epoch)
        steps = math.ceil(n / self.batch_size)
        noise = self.hyper["input_noise"]
        use_noise = bool((noise > 0).any())
        use_l2 = bool((self.hyper["l2"] > 0).any())
        use_l1 = bool((self.hyper["l1"] > 0).any())
        use_sharing = bool(self.sharing) and bool((self.hyper["soft_sharing"] > 0).any())
        proximal = use_l1 and self.recipe.penalty.l1_mode == "proximal"
        clip = CLIPPERS.get(tcfg.clip.by)
        active = self.active().to(torch.float32)
        max_norm = self._max_norm(active)
        loss_sum = torch.zeros(self.members, dtype=torch.float64)
        score_sum = torch.zeros(self.members, dtype=torch.float64)
        model.train()
        for b in range(steps):
            xb, yb = data.batch(order[..., b * self.batch_size : (b + 1) * self.batch_size])
            model.random.step = self.state.step
            if use_noise:  # D4: x + eps, E eps = 0, cov = sigma^2 I, training only
                if xb.dim() == 2:
                    xb = xb.unsqueeze(0).expand(self.members, *xb.shape)
                eps = model.random.normal(INPUT_NOISE_STREAM, tuple(xb.shape[1:]))
                xb = xb + noise.view(-1, *([1] * (xb.dim() - 1))) * eps
            out = model(xb)
            loss = member_loss(out, yb, data.task)
            for r in self.roles:
                r.param.grad = None
            loss.sum().backward()
            self.constraints.tie_gradients_()
            if use_l2 or (use_l1 and not proximal):  # C1, C2: penalty gradients added directly
                add_penalty_gradients_(
                    self.penalized,
                    l2=self.hyper["l2"] if use_l2 else None,
                    l1=self.hyper["l1"] if use_l1 and not proximal else None,
                    form=self.recipe.penalty.l2_form,
                )
            if use_sharing:  # C4
                add_soft_sharing_gradients_(self.sharing, self.hyper["soft_sharing"])
            self.constraints.mask_gradients_()
            if clip is not None:
                live = [r for r in self.roles if r.param.grad is not None]  # tied copies have none
                grads = clip(live, [r.param.grad for r in live], self.hyper["clip"], tcfg.clip.eps)
                for r, g in zip(live, grads):
                    r.param.grad = g
            epoch_frac = epoch + b / steps
            factor = lr_factor(tcfg.schedule, epoch_frac, tcfg.epochs, step_size=1.0 / steps)
            lr = self.hyper["lr"] * (factor * active)
            self.optimizer.step(lr)
            if proximal:
                l1_proximal_(self.penalized, lr * self.hyper["l1"], self.optimizer.l1_scales(r for r, _ in self.penalized))
            self.constraints.project_(max_norm)  # C5
            with torch.no_grad():  # accumulated on tensors: no host sync inside the epoch
                loss_sum.add_(loss.detach(), alpha=yb.shape[-1])
                score_sum.add_(member_score_sum(out.detach(), yb, data.task))
            self.state.step += 1
        self.last_lr = lr
        return loss_sum / n, finish_metric(score_sum, n, data.task, target_std=self.target_std), self._penalty()

    @torch.no_grad()
    def _penalty(self) -> torch.Tensor:
        """The members' penalty at the end of the epoch (L2, L1, soft sharing at their strengths; reported, not trained on here)."""
        total = torch.zeros(self.members, dtype=torch.float64)
        if bool((self.hyper["l2"] > 0).any()):
            total += l2_penalty(self.penalized, self.hyper["l2"], form=self.recipe.penalty.l2_form).double()
        if bool((self.hyper["l1"] > 0).any()):
            total += l1_penalty(self.penalized, self.hyper["l1"]).double()
        if self.sharing and bool((self.hyper["soft_sharing"] > 0).any()):
            total += soft_sharing_penalty(self.sharing, self.hyper["soft_sharing"]).double()
        return total

    # ----------------------------------------------------------------- the loop
    def run(self) -> LoopState:
        tcfg, es, state = self.recipe.train, self.recipe.train.early_stopping, self.state
        start = time.perf_counter() - state.wall_time
        try:
            for epoch in range(state.epoch, tcfg.epochs):
                train_loss, train_metric, penalty = self._train_epoch(epoch)
                val_loss, val_metric = self._validate()
                state.epoch = epoch + 1
                record = self._end_epoch(epoch + 1, train_loss, train_metric, penalty, val_loss, val_metric)
                state.wall_time = time.perf_counter() - start
                for callback in self.callbacks:
                    callback(record, self)
                if not bool(self.active().any()):
                    break
        except KeyboardInterrupt:
            state.interrupted = True
        state.wall_time = time.perf_counter() - start
        if self.keep_resume_state:  # where training stood, before the best weights come back
            self.resume_state = self.state_dict()
        if es.restore_best:
            self.restore_best()
        return state

    def _validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.validation is None:  # nothing to monitor: every epoch counts as the best so far
            nan = torch.full((self.members,), float("nan"), dtype=torch.float64)
            return nan, nan
        X, y, weight = self.validation
        return evaluate(self.model, X, y, self.data.task, target_std=self.target_std, weight=weight)

    def _end_epoch(self, epoch, train_loss, train_metric, penalty, val_loss, val_metric) -> EpochRecord:
        state, es = self.state, self.recipe.train.early_stopping
        values = {"val_loss": val_loss, f"val_{self.metric}": val_metric}[self.monitor]
        was_active = self.active()
        improved, diverged = [False] * self.members, [False] * self.members
        for m in range(self.members):
            if not was_active[m]:
                continue
            checked = (train_loss, val_loss) if self.validation is not None else (train_loss,)
            if not all(math.isfinite(float(t[m])) for t in checked):
                state.diverged_at[m] = epoch
                diverged[m] = True
                continue
            value = self.sign * float(values[m]) if self.validation is not None else -float(epoch)
            improved[m] = value < state.best_value[m] - es.min_delta
            if improved[m]:
                state.best_value[m], state.best_epoch[m], state.wait[m] = value, epoch, 0
            else:
                state.wait[m] += 1
                if es.patience is not None and state.wait[m] >= es.patience:
                    state.stopped[m] = True
        self._keep_best(torch.tensor(improved))
        lr = self.last_lr
        rows = []
        for m in range(self.members):
            row = {
                "epoch": epoch,
                "member": self.member_ids[m],
                "train_loss": float(train_loss[m]),
                f"train_{self.metric}": float(train_metric[m]),
                "val_loss": float(val_loss[m]),
                f"val_{self.metric}": float(val_metric[m]),
                "penalty": float(penalty[m]),
                "lr": float(lr[m]),
            }
            rows.append(row)
        self.history.extend(rows)
        return EpochRecord(epoch, rows, improved, list(state.stopped), diverged)

    # ----------------------------------------------------------------- compaction
    @torch.no_grad()
    def keep_members(self, keep: list[int]) -> None:
        """Shrink the population to these members (by current index): their weights, optimizer state,
        hyper-parameters, rows and loop state; the others stop costing compute (successive halving, X2)."""
        index = torch.tensor(keep, dtype=torch.long)
        for name, t in self._member_tensors().items():
            t.data = t.data[index].clone()
            self.best_state[name] = self.best_state[name][index].clone()
            if isinstance(t, torch.nn.Parameter):
                t.grad = None
        for module in self.model.modules():
            if isinstance(getattr(module, "members", None), int):
                module.members = len(keep)
            if hasattr(module, "active") and isinstance(getattr(module, "p", None), torch.Tensor):
                module.active = bool((module.p > 0).any())
        self.model.random.keep_(keep)
        self.optimizer.keep_(index)
        self.hyper = {k: v[index] for k, v in self.hyper.items()}
        self.data = self.data.keep(index)
        self.target_std = self.data.target_std
        self.validation = self.data.validation() if self.data.has_val else None
        for key in ("best_value", "best_epoch", "wait", "stopped", "diverged_at"):
            values = getattr(self.state, key)
            setattr(self.state, key, [values[m] for m in keep])
        self.member_ids = [self.member_ids[m] for m in keep]
        self.members = len(keep)
        self.last_lr = self.last_lr[index] if hasattr(self, "last_lr") else None

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """A copy of everything `load_state_dict` needs to continue training exactly where it stood."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "loop": dict(self.state.__dict__),
            "best_state": {k: v.clone() for k, v in self.best_state.items()},
            "history": list(self.history),
        }

    def load_state_dict(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = LoopState(**saved["loop"])
        self.state.interrupted = False
        self.best_state = {k: v.clone() for k, v in saved["best_state"].items()}
        self.history = list(saved["history"])
