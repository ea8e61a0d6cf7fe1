"""Optimizers whose every hyper-parameter is a tensor [M], one value per member (A3).

Element-wise optimizers need no coupling between members: member m's slice of each state tensor
follows exactly the update it would follow alone. The updates reproduce `torch.optim` (SGD with
momentum/Nesterov, RMSprop, Adam); weight decay is always *decoupled*: `w <- w - lr * wd * w`
before the step (Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019), so
`adamw` and `adam` with `weight_decay` are the same rule; the coupled form is `penalty.l2`.

`l1_scale(i)` puts the L1 proximal step (`tamenet.penalties.l1_proximal_`) in each optimizer's own
metric. Every update here is `w <- w - lr * P^-1 d` with `d` an average of gradients that equals the
gradient `g` once training is stationary and `P` a positive diagonal preconditioner: `1 - mu` for
heavy-ball or Nesterov SGD, `sqrt(v_hat) + eps` for Adam, `(1 - mu) (sqrt(s) + eps)` for RMSProp.
Soft thresholding after that step with `t = lr * l1 * P^-1` is the proximal step in the metric `P`
(proximal quasi-Newton: Lee, Sun & Saunders, "Proximal Newton-type methods for minimizing composite
functions", SIAM J. Optim. 2014; for adaptive optimizers Yun, Lozano & Yang, "Adaptive proximal
gradient methods for structured neural networks", NeurIPS 2021). At a fixed point `w*`,
`w* = S_t(w* - lr P^-1 g)` holds iff `-lr P^-1 g in t * d|w*|` (the prox of `t|.|` at `z` is `w` iff
`z - w in t d|w|`), i.e. iff `0 in g + l1 d|w*|`: the lasso condition at strength `l1`, whatever `P`
is. Plain ISTA (Beck & Teboulle, SIAM J. Imaging Sci. 2009) is `P = 1`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..config import RecipeError
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
        self.index = {r.name: i for i, r in enumerate(roles)}
        self.l1_checked = False
        self.lr_scale: dict[int, torch.Tensor] = {}  # per parameter: a factor [M] on its learning rate (transfer)

    def scale_lr(self, factors: dict[str, torch.Tensor]) -> None:
        """Multiply these parameters' learning rates by a factor per member (e.g. copied layers in soft transfer)."""
        for name, factor in factors.items():
            i = self.index[name]
            self.lr_scale[i] = factor.to(self.roles[i].param.device, self.roles[i].param.dtype).view(self.shapes[i])

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with effective learning rates lr [M] (schedule and frozen members already folded in)."""
        self.steps += 1
        for i, r in enumerate(self.roles):
            p, g = r.param, r.param.grad
            if g is None:
                continue
            lr_i = lr.to(p.device, p.dtype).view(self.shapes[i])
            if i in self.lr_scale:
                lr_i = lr_i * self.lr_scale[i]
            if self.decay:  # decoupled: w <- w - lr * wd * w
                p.mul_(1.0 - lr_i * self.hyper[i]["weight_decay"])
            self.update(i, p, g, lr_i)

    def update(self, i: int, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> None:
        raise NotImplementedError

    def l1_scale(self, i: int) -> torch.Tensor | float:
        """`P^-1` of parameter i (broadcastable to it): the factor of the L1 threshold `lr * l1` (module docstring)."""
        raise RecipeError(
            f"penalty.l1 with l1_mode 'proximal': expected an optimizer that defines its preconditioner (l1_scale), "
            f"got {type(self).__name__}; use penalty.l1_mode 'subgradient' with it"
        )

    def check_l1(self) -> None:
        """Raise if some member's preconditioner cannot honour the L1 proximal step (called once, on first use)."""

    def l1_scales(self, roles: Iterable[ParamRole]) -> list[torch.Tensor | float]:
        """`l1_scale` of each of these parameter roles (matched by name to this optimizer's parameters)."""
        if not self.l1_checked:
            self.check_l1()
            self.l1_checked = True
        scales = []
        for r in roles:
            if r.name not in self.index:
                raise ValueError(f"l1_scales: expected a parameter this optimizer updates, got '{r.name}'")
            scales.append(self.l1_scale(self.index[r.name]))
        return scales

    def _check_momentum_below_one(self) -> None:
        """`1 / (1 - mu)` must be finite for every member (a member with l1 = 0 too: 0 * inf is NaN)."""
        mu = self.hyper[0]["momentum"].flatten() if self.hyper else torch.zeros(0)
        if bool((mu >= 1.0).any()):
            members = [m for m, value in enumerate(mu.tolist()) if value >= 1.0]
            raise RecipeError(
                f"train.momentum: the L1 proximal threshold lr * l1 / (1 - momentum) needs momentum < 1, "
                f"got {mu[members[0]].item()} for member(s) {members}; lower it or use penalty.l1_mode 'subgradient'"
            )

    def keep_(self, members: torch.Tensor) -> None:
        """Keep only these members' state and hyper-parameters (population compaction)."""
        for i, r in enumerate(self.roles):
            if not r.stacked:
                continue
            self.state[i] = {k: v[members].clone() for k, v in self.state[i].items()}
            self.hyper[i] = {k: v[members] for k, v in self.hyper[i].items()}
            if i in self.lr_scale:
                self.lr_scale[i] = self.lr_scale[i][members]

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": [{k: v.clone() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = int(saved["steps"])
        self.state = [{k: v.to(r.param.device).clone() for k, v in s.items()} for r, s in zip(self.roles, saved["state"])]


class SGD(PopulationOptimizer):
    """`v <- mu v + g`; `w <- w - lr v` (Nesterov: `w <- w - lr (g + mu v)`); mu = 0 is plain SGD.

    L1: stationary `v = g / (1 - mu)` (and Nesterov's `g + mu v = g / (1 - mu)` too), so the step is
    `lr g / (1 - mu)` and the threshold `lr * l1 / (1 - mu)`; exactly `lr * l1` (ISTA) without momentum.
    """

    uses = ("momentum",)

    def __init__(self, roles, hyper, **kwargs):
        super().__init__(roles, hyper, **kwargs)
        self.momentum_free = not bool((hyper["momentum"] != 0).any())

    def check_l1(self):
        self._check_momentum_below_one()

    def l1_scale(self, i):
        if self.momentum_free:  # plain SGD: ISTA's threshold, the arithmetic untouched
            return 1.0
        return 1.0 / (1.0 - self.hyper[i]["momentum"])

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
    """`s <- rho s + (1 - rho) g^2`; `v <- mu v + g / (sqrt(s) + eps)`; `w <- w - lr v` (Tieleman & Hinton, 2012).

    L1: stationary `v = g / ((1 - mu) (sqrt(s) + eps))`, so the threshold is `lr * l1 / ((1 - mu) (sqrt(s) + eps))`
    per element, with `s` as the step just used it.
    """

    uses = ("rho", "momentum")

    def check_l1(self):
        self._check_momentum_below_one()

    def l1_scale(self, i):
        state = self.state[i]
        if "square" not in state:  # never stepped (no gradient yet): no metric, ISTA's threshold
            return 1.0
        return 1.0 / ((1.0 - self.hyper[i]["momentum"]) * (state["square"].sqrt() + self.eps))

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
    """`m <- b1 m + (1-b1) g`, `v <- b2 v + (1-b2) g^2`, `w <- w - lr m_hat / (sqrt(v_hat) + eps)` (Kingma & Ba, ICLR 2015).

    L1: stationary `m_hat = g` (m is an average, not a sum: no `1 / (1 - b1)`), so the threshold is
    `lr * l1 / (sqrt(v_hat) + eps)` per element, with the denominator of the step just taken.
    """

    uses = ("beta1", "beta2")

    def _denominator(self, i: int) -> torch.Tensor:
        """`sqrt(v_hat) + eps` of parameter i after `self.steps` updates."""
        correction2 = 1.0 - self.hyper[i]["beta2"] ** self.steps
        return (self.state[i]["v"].sqrt() / correction2.sqrt()).add_(self.eps)

    def l1_scale(self, i):
        if "v" not in self.state[i]:  # never stepped (no gradient yet): no metric, ISTA's threshold
            return 1.0
        return self._denominator(i).reciprocal_()

    def update(self, i, p, g, lr):
        b1, b2 = self.hyper[i]["beta1"], self.hyper[i]["beta2"]
        state = self.state[i]
        if "m" not in state:
            state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
        m, v = state["m"], state["v"]
        m.lerp_(g, 1.0 - b1)
        v.mul_(b2).addcmul_(g, g * (1.0 - b2))
        correction1 = 1.0 - b1**self.steps
        p.addcmul_(m / self._denominator(i), lr / correction1, value=-1.0)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSProp, "adam": Adam, "adamw": Adam}
"""Optimizer name -> class. Per-member hyper-parameters: lr, momentum, beta1, beta2, rho, weight_decay."""


def make_optimizer(name: str, roles: list[ParamRole], hyper: dict[str, torch.Tensor], *, eps: float, nesterov: bool):
    if nesterov and name != "sgd":
        raise ValueError(f"train.nesterov: Nesterov momentum applies to optimizer 'sgd', got optimizer '{name}'")
    return lookup(OPTIMIZERS, name, "optimizer")(roles, hyper, eps=eps, nesterov=nesterov)
