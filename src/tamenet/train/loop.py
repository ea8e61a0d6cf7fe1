"""The one training loop: every member of a population steps together, each by its own numbers.

    for each epoch:  epoch_begin -> steps (see `step.py`: input transforms -> model -> loss -> gradient
                     transforms -> optimizer -> projections; step_end after each) -> validation
                     -> early stopping (best weights) -> epoch_end (listeners, then controllers)

A member whose loss turns NaN or infinite is frozen without disturbing the others; a population
of one stops. Ctrl-C ends the loop cleanly and the run is finished with what it has. An interrupt
never passes a half-trained epoch off as a whole one: during an epoch's steps it abandons that epoch
(`resumable` is False, so no resume state is taken from it; the last one saved at an epoch's end
stands), and during an epoch's bookkeeping (early stopping, best weights, listeners) it waits until
that is done. Resuming from the state of a completed epoch is exact: the batch order and every
random mask are functions of (seed, epoch, step), not of a generator's history. Everything
lives on the recipe's device (`train.device`); within an epoch's steps nothing is read back to the host.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import Recipe, RecipeError
from ..constraints import resolve_constraints
from ..devices import check_training, require_device
from ..feature_selection import select_inputs_
from ..models import Population
from ..nn import mix_seed
from ..penalties import l1_penalty, l2_penalty, penalized, sharing_sets, soft_sharing_penalty
from .early_stopping import EarlyStopping
from .events import Events
from .hyper import member_hyper
from .input_transforms import INPUT_NOISE_STREAM  # noqa: F401  (its old import path)
from .losses import TASK_METRIC, evaluate, finish_metric, member_score_sum
from .member_data import MemberData
from .member_state import compact, restore_, snapshot
from .optim import make_optimizer
from .precision import make_precision
from .schedule import lr_factor
from .step import build_step


@dataclass
class EpochRecord:
    """What one epoch produced: one metrics row per member, and which members improved (filled by early stopping)."""

    epoch: int
    rows: list[dict]
    improved: list[bool] = field(default_factory=list)
    stopped: list[bool] = field(default_factory=list)
    diverged: list[bool] = field(default_factory=list)


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


def resolve_device(name: str) -> torch.device:
    """`train.device`: auto (the GPU when PyTorch sees one, else the CPU), cpu or cuda (`tamenet.devices.require_device`)."""
    return require_device(name)


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


class DeferredInterrupt:
    """While installed (main thread, default SIGINT handler only), Ctrl-C inside `hold()` is held back and
    raised as KeyboardInterrupt when the block ends; outside it, Ctrl-C raises at once as usual."""

    def __init__(self) -> None:
        self.holding = self.pending = False
        self.previous: Any = None

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.holding:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt


class Trainer:
    """Trains a population on its members' rows as the recipe says; `run()` returns when every member is done.

    `callbacks`: listeners (observe), controllers (may change the run, e.g. `keep_members`) or plain functions
    `(record, trainer)` called at each epoch's end as controllers (see `events.py`).
    """

    def __init__(
        self,
        model: Population,
        data: MemberData,
        recipe: Recipe,
        *,
        callbacks: list[Any] | None = None,
        keep_resume_state: bool = False,
    ) -> None:
        self.recipe = recipe
        self.device = check_training(recipe.train)  # cuda without a GPU, a precision refused here: one line
        self.model = model.to(self.device)
        self.data = data.to(self.device)
        self.keep_resume_state = keep_resume_state
        self.events = Events(callbacks)
        self.members = model.members
        self.hyper = {k: v.to(self.device) for k, v in member_hyper(recipe).items()}
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
        self.constraints.project_(self.max_norm_of(torch.ones(self.members, device=self.device)))  # C5 from the start
        tcfg = recipe.train
        self.optimizer = make_optimizer(tcfg.optimizer, self.roles, self.hyper, eps=tcfg.eps, nesterov=tcfg.nesterov)
        self.step = build_step(recipe)
        self.step.precision = make_precision(tcfg.precision, self.device, self.members)
        self.early_stopping = EarlyStopping(recipe, data.task)
        self.monitor, self.sign = self.early_stopping.monitor, self.early_stopping.sign
        self.metric = TASK_METRIC[data.task]
        if data.members != self.members:
            raise ValueError(f"the data holds rows for {data.members} members but the model has {self.members}")
        self.target_std = self.data.target_std
        self.batch_size = batch_size_of(recipe, data.n_train)
        self.validation = self.data.validation() if data.has_val else None
        self.state = LoopState(
            best_value=[math.inf] * self.members,
            best_epoch=[0] * self.members,
            wait=[0] * self.members,
            stopped=[False] * self.members,
            diverged_at=[None] * self.members,
        )
        if bool((self.hyper["input_features"] != 0).any()):  # C6: each member's k best inputs, from its training rows
            select_inputs_(model, self.data, self.hyper["input_features"].tolist())
        self.best_state = snapshot(model)
        self.keeps_best = True  # False: nobody restores the best epoch's weights (cross-validation without
        # restore_best), so they are not copied at every improvement (a pass over every weight per epoch)
        self.history: list[dict] = []
        self.member_ids = list(range(self.members))  # original member numbers, after compaction too
        self.epoch_active = torch.ones(self.members, device=self.device)
        self.step.check(self)  # a piece's refusal (rows that are not images, ...) comes before any file is written
        self.resumable = True  # the state is a completed epoch's (False while an epoch's steps run)
        self.resume_state: dict | None = None
        self.parallel: Any = None  # data-parallel training: this rank's `tamenet.dist.data_parallel.DataParallel`

    def max_norm_of(self, active: torch.Tensor) -> torch.Tensor | None:
        """Max-norm's c [M] for the members still training (0 for the others: their weights stay put); None when off."""
        c = self.hyper["max_norm"]
        return c * (active > 0) if bool((c > 0).any()) else None

    # ----------------------------------------------------------------- member state
    @torch.no_grad()
    def restore_best(self) -> None:
        """Load every member's weights from its best epoch (G2)."""
        if not self.keeps_best:
            raise RuntimeError("this trainer does not keep the best epoch's weights (keeps_best is False)")
        restore_(self.model, self.best_state)

    def active(self) -> torch.Tensor:
        s = self.state
        return torch.tensor([not (a or d is not None) for a, d in zip(s.stopped, s.diverged_at)])

    # ----------------------------------------------------------------- one epoch
    def _train_epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        data, tcfg, model = self.data, self.recipe.train, self.model
        n = data.n_train
        order = batch_orders(model.random.seeds, n, epoch).to(self.device)
        steps = math.ceil(n / self.batch_size)
        self.epoch_active = self.active().to(torch.float32).to(self.device)
        self.step.begin_epoch(self)
        self.events.emit("epoch_begin", self, epoch)
        hears_steps = self.events.hears_steps
        loss_sum = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        score_sum = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        model.train()
        for b in range(steps):
            self.batch_positions = order[..., b * self.batch_size : (b + 1) * self.batch_size]  # read by pieces (distill)
            if self.parallel is not None:  # this rank's rows of the global batch
                self.batch_positions = self.parallel.shard(self, self.batch_positions)
            xb, yb = data.batch(self.batch_positions)
            model.random.step = self.state.step
            factor = lr_factor(tcfg.schedule, epoch + b / steps, tcfg.epochs, step_size=1.0 / steps)
            lr = self.hyper["lr"] * (factor * self.epoch_active)
            out, loss = self.step(self, xb, yb, lr)
            with torch.no_grad():  # accumulated on tensors: no host sync inside the epoch
                loss_sum.add_(loss.detach(), alpha=yb.shape[-1])
                score_sum.add_(member_score_sum(out.detach(), yb, data.task))
            self.state.step += 1
            if hears_steps:
                self.events.emit("step_end", self, self.state.step)
        self.last_lr = lr
        if self.parallel is not None:  # the global batch's sums
            loss_sum, score_sum = self.parallel.sum_over_ranks(loss_sum, score_sum)
        return loss_sum / n, finish_metric(score_sum, n, data.task, target_std=self.target_std), self._penalty()

    @torch.no_grad()
    def _penalty(self) -> torch.Tensor:
        """The members' penalty at the end of the epoch (L2, L1, soft sharing at their strengths; reported, not trained on here)."""
        total = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        if bool((self.hyper["l2"] > 0).any()):
            total += l2_penalty(self.penalized, self.hyper["l2"], form=self.recipe.penalty.l2_form).double()
        if bool((self.hyper["l1"] > 0).any()):
            total += l1_penalty(self.penalized, self.hyper["l1"]).double()
        if self.sharing and bool((self.hyper["soft_sharing"] > 0).any()):
            total += soft_sharing_penalty(self.sharing, self.hyper["soft_sharing"]).double()
        return total

    # ----------------------------------------------------------------- the loop
    def run(self) -> LoopState:
        """Train every epoch left; `side_by_side.train_side_by_side` with this trainer alone (the one loop)."""
        from .side_by_side import train_side_by_side

        train_side_by_side([self])
        return self.state

    def train_epoch(self) -> tuple[torch.Tensor, ...]:
        """The next epoch's steps and its validation: the numbers `close_epoch` takes (no events but
        epoch_begin and step_end; pure compute, so several trainers may run theirs at once on threads)."""
        self.resumable = False  # from here until early stopping has taken this epoch in
        return (*self._train_epoch(self.state.epoch), *self._validate())

    def close_epoch(self, numbers: tuple[torch.Tensor, ...], start: float) -> None:
        """An epoch's bookkeeping (metrics rows, early stopping, epoch_end) from `train_epoch`'s numbers; `start`:
        when the run began (`time.perf_counter()`, less the time of the epochs before a resume)."""
        state = self.state
        train_loss, train_metric, penalty, val_loss, val_metric = numbers
        state.epoch += 1
        rows = self._rows(state.epoch, train_loss, train_metric, penalty, val_loss, val_metric)
        record = EpochRecord(state.epoch, rows)
        self.early_stopping.epoch_end(self, record)
        state.wall_time = time.perf_counter() - start
        self.resumable = True
        self.events.emit("epoch_end", self, record)
        if self.parallel is not None:  # every rank took the same decisions
            self.parallel.check_agreement(self)

    def trains_on(self) -> bool:
        """Whether another epoch is due: epochs left and a member still training."""
        return self.state.epoch < self.recipe.train.epochs and bool(self.active().any())

    def end_run(self, start: float) -> None:
        """After the last epoch (or Ctrl-C): the resume state, train_end, then the best weights."""
        self.state.wall_time = time.perf_counter() - start
        if self.keep_resume_state:  # where training stood, before the best weights come back; None mid-epoch
            self.resume_state = self.state_dict() if self.resumable else None
        self.events.emit("train_end", self)
        if self.recipe.train.early_stopping.restore_best:
            self.restore_best()

    def _validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.validation is None:  # nothing to monitor: every epoch counts as the best so far
            nan = torch.full((self.members,), float("nan"), dtype=torch.float64)
            return nan, nan
        X, y, weight = self.validation
        return evaluate(self.model, X, y, self.data.task, target_std=self.target_std, weight=weight)

    def _rows(self, epoch, train_loss, train_metric, penalty, val_loss, val_metric) -> list[dict]:
        """One metrics row per member (read back to the host once per epoch)."""
        values = [t.detach().cpu().tolist() for t in (train_loss, train_metric, val_loss, val_metric, penalty, self.last_lr)]
        rows = []
        for m in range(self.members):
            tl, tm, vl, vm, pen, lr = (v[m] for v in values)
            rows.append({
                "epoch": epoch, "member": self.member_ids[m],
                "train_loss": tl, f"train_{self.metric}": tm, "val_loss": vl, f"val_{self.metric}": vm,
                "penalty": pen, "lr": lr,
            })
        self.history.extend(rows)
        return rows

    # ----------------------------------------------------------------- compaction
    @torch.no_grad()
    def keep_members(self, keep: list[int]) -> None:
        """Shrink the population to these members (by current index): their weights, optimizer state,
        hyper-parameters, rows and loop state; the others stop costing compute (successive halving, X2)."""
        index = torch.tensor(keep, dtype=torch.long)
        self.model.keep_members_(index)
        self.best_state = compact(self.best_state, index, stacked=self.model.stacked)
        self.optimizer.keep_(index.to(self.device))
        self.step.keep_members_(index)
        self.hyper = {k: v[index.to(v.device)] for k, v in self.hyper.items()}
        self.data = self.data.keep(index.to(self.device))
        self.target_std = self.data.target_std
        self.validation = self.data.validation() if self.data.has_val else None
        for key in ("best_value", "best_epoch", "wait", "stopped", "diverged_at"):
            values = getattr(self.state, key)
            setattr(self.state, key, [values[m] for m in keep])
        self.member_ids = [self.member_ids[m] for m in keep]
        self.members = len(keep)
        self.last_lr = self.last_lr[index.to(self.last_lr.device)] if getattr(self, "last_lr", None) is not None else None

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """A copy of everything `load_state_dict` needs to continue training exactly where it stood."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "loop": dict(self.state.__dict__),
            "best_state": {k: v.clone() for k, v in self.best_state.items()},
            "history": list(self.history),
            **({"scaler": self.step.precision.scaler.state_dict()} if self._scaler() is not None else {}),
        }

    def _scaler(self) -> Any:
        """fp16's per-member loss scaler (None at any other precision)."""
        return self.step.precision.scaler if self.step.precision is not None else None

    def load_state_dict(self, saved: dict) -> None:
        self.resumable = True
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = LoopState(**saved["loop"])
        self.state.interrupted = False
        self.best_state = {k: v.to(self.device).clone() for k, v in saved["best_state"].items()}
        self.history = list(saved["history"])
        if "scaler" in saved and self._scaler() is not None:
            self._scaler().load_state_dict(saved["scaler"])
