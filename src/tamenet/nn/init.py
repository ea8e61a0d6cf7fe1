"""Weight initialization per member (A5): each member's tensor drawn from its own seeded generator.

Biases start at zero. Variances: Xavier/Glorot `2 / (n_in + n_out)` (Glorot & Bengio, AISTATS 2010),
He `2 / n_in` (He et al., ICCV 2015); the uniform forms use the bound `sqrt(3 * variance)`.
Zero or constant weights are refused: every unit of a layer would compute the same function and
receive the same gradient, so the symmetry would never break.
"""

from __future__ import annotations

import math

import torch

from ..registry import lookup
from .random import mix_seed


def xavier_uniform(fan_in: int, fan_out: int) -> tuple[str, float]:
    return "uniform", math.sqrt(6.0 / (fan_in + fan_out))


def xavier_normal(fan_in: int, fan_out: int) -> tuple[str, float]:
    return "normal", math.sqrt(2.0 / (fan_in + fan_out))


def he_uniform(fan_in: int, fan_out: int) -> tuple[str, float]:
    return "uniform", math.sqrt(6.0 / fan_in)


def he_normal(fan_in: int, fan_out: int) -> tuple[str, float]:
    return "normal", math.sqrt(2.0 / fan_in)


INITS = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
}
"""Initialization name -> (fan_in, fan_out) -> (distribution, bound or standard deviation)."""

REFUSED_INITS = ("zeros", "zero", "constant", "ones")


def check_init(name: str) -> None:
    if name in REFUSED_INITS:
        raise ValueError(
            f"init '{name}' refused: zero or constant weights give every unit of a layer the same output and "
            f"the same gradient, so they never become different (valid: {', '.join(INITS)})"
        )
    lookup(INITS, name, "init")


def init_weight_(weight: torch.Tensor, name: str, *, seeds: list[int], layer: int, fan_in: int, fan_out: int) -> None:
    """Fill a member-stacked weight [M, ...] in place, member m from a generator seeded by (seeds[m], layer)."""
    check_init(name)
    kind, scale = INITS[name](fan_in, fan_out)
    with torch.no_grad():
        for m, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(mix_seed(seed, layer, 7919))
            shape = tuple(weight.shape[1:])
            if kind == "normal":
                values = torch.randn(shape, generator=gen) * scale
            else:
                values = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * scale
            weight[m].copy_(values.to(weight.dtype))
