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


def _shape(p: torch.Tensor, stacked: bool) -> tuple[int, ...]:
    """How a member vector [M] broadcasts against a parameter: [M, 1, ...] (or all ones for a plain parameter)."""
    return (-1, *([1] * (p.dim() - 1))) if stacked else tuple([1] * p.dim())


class PopulationOptimizer:
    """Base: holds parameters, per-member hyper-parameters (broadcast views made once) and per-parameter state."""

    uses: tuple[str, ...] = ()

    def __init__(self, roles: list[ParamRole], hyper: dict[str, torch.Tensor], *, eps: float = 1e-8, nesterov: bool = False):
        self.roles = roles
        self.eps, self.nesterov = eps, nesterov
        self.steps = 0
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in roles]
        self.shapes = [_shape(r.param, r.stacked) for r in roles]
        names = (*self.uses, "weight_decay")
        self.hyper = [
            {n: hyper[n].to(r.param.device, r.param.dtype).view(shape) for n in names}
            for r, shape in zip(roles, self.shapes)
        ]
        self.decay = bool((hyper["weight_decay"] != 0).any())

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with effective learning rates lr [M] (schedule and frozen members already folded in)."""
        self.steps += 1
        for i, r in enumerate(self.roles):
            p, g = r.param, r.param.grad
            if g is None:
                continue
            lr_i = lr.to(p.device, p.dtype).view(self.shapes[i])
            if self.decay:  # decoupled: w <- w - lr * wd * w
                p.mul_(1.0 - lr_i * self.hyper[i]["weight_decay"])
            self.update(i, p, g, lr_i)

    def update(self, i: int, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> None:
        raise NotImplementedError

    def keep_(self, members: torch.Tensor) -> None:
        """Keep only these members' state and hyper-parameters (population compaction)."""
        for i, r in enumerate(self.roles):
            if not r.stacked:
                continue
            self.state[i] = {k: v[members].clone() for k, v in self.state[i].items()}
            self.hyper[i] = {k: v[members] for k, v in self.hyper[i].items()}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": [{k: v.clone() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = int(saved["steps"])
        self.state = [{k: v.to(r.param.device).clone() for k, v in s.items()} for r, s in zip(self.roles, saved["state"])]


class SGD(PopulationOptimizer):
    """`v <- mu v + g`; `w <- w - lr v` (Nesterov: `w <- w - lr (g + mu v)`); mu = 0 is plain SGD."""

    uses = ("momentum",)

    def update(self, i, p, g, lr):
        mu = self.hyper[i]["momentum"]
        state = self.state[i]
        if "velocity" not in state:
            state["velocity"] = g.clone()
        else:
            torch.addcmul(g, state["velocity"], mu, out=state["velocity"])
        v = state["velocity"]
        direction = g + mu * v if self.nesterov else v
        p.addcmul_(direction, lr, value=-1.0)


class RMSProp(PopulationOptimizer):
    """`s <- rho s + (1 - rho) g^2`; `w <- w - lr g / (sqrt(s) + eps)` (Tieleman & Hinton, 2012)."""

    uses = ("rho", "momentum")

    def update(self, i, p, g, lr):
        rho, mu = self.hyper[i]["rho"], self.hyper[i]["momentum"]
        state = self.state[i]
        if "square" not in state:
            state["square"] = torch.zeros_like(p)
            state["velocity"] = torch.zeros_like(p)
        s = state["square"]
        s.mul_(rho).addcmul_(g, g * (1.0 - rho))
        scaled = g / (s.sqrt() + self.eps)
        v = state["velocity"]
        v.mul_(mu).add_(scaled)
        p.addcmul_(v, lr, value=-1.0)


class Adam(PopulationOptimizer):
    """`m <- b1 m + (1-b1) g`, `v <- b2 v + (1-b2) g^2`, `w <- w - lr m_hat / (sqrt(v_hat) + eps)` (Kingma & Ba, ICLR 2015)."""

    uses = ("beta1", "beta2")

    def update(self, i, p, g, lr):
        b1, b2 = self.hyper[i]["beta1"], self.hyper[i]["beta2"]
        state = self.state[i]
        if "m" not in state:
            state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
        m, v = state["m"], state["v"]
        m.lerp_(g, 1.0 - b1)
        v.mul_(b2).addcmul_(g, g * (1.0 - b2))
        t = self.steps
        correction1 = 1.0 - b1**t
        correction2 = 1.0 - b2**t
        denom = (v.sqrt() / correction2.sqrt()).add_(self.eps)
        p.addcmul_(m / denom, lr / correction1, value=-1.0)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSProp, "adam": Adam, "adamw": Adam}
"""Optimizer name -> class. Per-member hyper-parameters: lr, momentum, beta1, beta2, rho, weight_decay."""


def make_optimizer(name: str, roles: list[ParamRole], hyper: dict[str, torch.Tensor], *, eps: float, nesterov: bool):
    if nesterov and name != "sgd":
        raise ValueError(f"train.nesterov: Nesterov momentum applies to optimizer 'sgd', got optimizer '{name}'")
    return lookup(OPTIMIZERS, name, "optimizer")(roles, hyper, eps=eps, nesterov=nesterov)
