"""Population-aware layers: every parameter has a leading member axis."""

from .init import INITS, check_init, init_weight_
from .layers import ACTIVATIONS, Dropout, Linear, dropout, make_activation
from .norms import NORMS, BatchNorm, LayerNorm
from .random import MemberRandom, mix_seed

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "NORMS",
    "BatchNorm",
    "Dropout",
    "LayerNorm",
    "Linear",
    "MemberRandom",
    "check_init",
    "dropout",
    "init_weight_",
    "make_activation",
    "mix_seed",
]
