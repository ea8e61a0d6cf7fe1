"""Optimizers whose every hyper-parameter is a tensor [M], one value per member (A3).

Element-wise optimizers need no coupling between members: member m's slice of each state tensor
follows exactly the update it would follow alone. The updates reproduce `torch.optim` (SGD with
momentum/Nesterov, RMSprop, Adam); weight decay is always *decoupled*: `w <- w - lr * wd * w`
before the step (Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019), so
`adamw` and `adam` with `weight_decay` are the same rule; the coupled form is `penalty.l2`.
"""

from __future__ import annotations

import torch

from ..models import ParamRole
from ..registry import lookup


def _view(h: torch.Tensor, p: torch.Tensor, stacked: bool) -> torch.Tensor:
    return h.view(-1, *([1] * (p.dim() - 1))) if stacked else h.view(*([1] * p.dim())) if p.dim() else h.view(())


class PopulationOptimizer:
    """Base: holds parameters, per-member hyper-parameters and per-parameter state."""

    def __init__(self, roles: list[ParamRole], hyper: dict[str, torch.Tensor], *, eps: float = 1e-8, nesterov: bool = False):
        self.roles = roles
        self.hyper = hyper
        self.eps, self.nesterov = eps, nesterov
        self.steps = 0
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in roles]

    def h(self, name: str, i: int) -> torch.Tensor:
        r = self.roles[i]
        return _view(self.hyper[name].to(r.param.device), r.param, r.stacked)

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with effective learning rates lr [M] (schedule and frozen members already folded in)."""
        self.steps += 1
        for i, r in enumerate(self.roles):
            p, g = r.param, r.param.grad
            if g is None:
                continue
            lr_i = _view(lr.to(p.device), p, r.stacked)
            wd = self.h("weight_decay", i)
            p.mul_(1.0 - lr_i * wd)
            self.update(i, p, g, lr_i)

    def update(self, i: int, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": [{k: v.clone() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = int(saved["steps"])
        self.state = [{k: v.clone() for k, v in s.items()} for s in saved["state"]]


class SGD(PopulationOptimizer):
    """`v <- mu v + g`; `w <- w - lr v` (Nesterov: `w <- w - lr (g + mu v)`); mu = 0 is plain SGD."""

    def update(self, i, p, g, lr):
        mu = self.h("momentum", i)
        state = self.state[i]
        if "velocity" not in state:
            state["velocity"] = g.clone()
        else:
            state["velocity"].mul_(mu).add_(g)
        v = state["velocity"]
        direction = g + mu * v if self.nesterov else v
        p.sub_(lr * direction)


class RMSProp(PopulationOptimizer):
    """`s <- rho s + (1 - rho) g^2`; `w <- w - lr g / (sqrt(s) + eps)` (Tieleman & Hinton, 2012)."""

    def update(self, i, p, g, lr):
        rho, mu = self.h("rho", i), self.h("momentum", i)
        state = self.state[i]
        if "square" not in state:
            state["square"] = torch.zeros_like(p)
            state["velocity"] = torch.zeros_like(p)
        s = state["square"]
        s.mul_(rho).add_((1.0 - rho) * g.square())
        scaled = g / (s.sqrt() + self.eps)
        v = state["velocity"]
        v.mul_(mu).add_(scaled)
        p.sub_(lr * v)


class Adam(PopulationOptimizer):
    """`m <- b1 m + (1-b1) g`, `v <- b2 v + (1-b2) g^2`, `w <- w - lr m_hat / (sqrt(v_hat) + eps)` (Kingma & Ba, ICLR 2015)."""

    def update(self, i, p, g, lr):
        b1, b2 = self.h("beta1", i), self.h("beta2", i)
        state = self.state[i]
        if "m" not in state:
            state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
        m, v = state["m"], state["v"]
        m.mul_(b1).add_((1.0 - b1) * g)
        v.mul_(b2).add_((1.0 - b2) * g.square())
        t = self.steps
        correction1 = 1.0 - b1**t
        correction2 = 1.0 - b2**t
        denom = v.sqrt() / correction2.sqrt() + self.eps
        p.sub_((lr / correction1) * m / denom)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSProp, "adam": Adam, "adamw": Adam}
"""Optimizer name -> class. Per-member hyper-parameters: lr, momentum, beta1, beta2, rho, weight_decay."""


def make_optimizer(name: str, roles: list[ParamRole], hyper: dict[str, torch.Tensor], *, eps: float, nesterov: bool):
    if nesterov and name != "sgd":
        raise ValueError(f"train.nesterov: Nesterov momentum applies to optimizer 'sgd', got optimizer '{name}'")
    return lookup(OPTIMIZERS, name, "optimizer")(roles, hyper, eps=eps, nesterov=nesterov)
