"""Population-aware layers: every parameter has a leading member axis."""

from .conv import POOLS, Conv, conv, global_avg_pool, pool
from .init import INITS, check_init, init_weight_
from .layers import ACTIVATIONS, Dropout, Linear, dropout, make_activation
from .norms import NORMS, BatchNorm, GroupNorm, InstanceNorm, LayerNorm, SwitchNorm, default_groups
from .random import MemberRandom, mix_seed
from .weight_norms import (
    SpectralNorm,
    energy_rank,
    minmax_weight,
    spectral_norm_estimate,
    spectral_normalize,
    standardize_weight,
    svd_denoise,
)

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "NORMS",
    "POOLS",
    "BatchNorm",
    "Conv",
    "Dropout",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "Linear",
    "MemberRandom",
    "SpectralNorm",
    "SwitchNorm",
    "check_init",
    "conv",
    "default_groups",
    "dropout",
    "energy_rank",
    "global_avg_pool",
    "init_weight_",
    "make_activation",
    "minmax_weight",
    "mix_seed",
    "pool",
    "spectral_norm_estimate",
    "spectral_normalize",
    "standardize_weight",
    "svd_denoise",
]
