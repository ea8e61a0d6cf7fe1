"""Population-aware layers: every parameter has a leading member axis."""

from .init import INITS, check_init, init_weight_
from .layers import (
    ACTIVATIONS,
    DROPOUT_MODES,
    DropConnect,
    Dropout,
    GaussianNoise,
    Linear,
    add_noise,
    dropout,
    dropout_masked,
    dropout_test,
    make_activation,
)
from .norms import NORMS, BatchNorm, GroupNorm, InstanceNorm, LayerNorm, SwitchNorm, default_groups
from .random import MemberRandom, mix_seed
from .weight_norms import (
    MinMaxWeight,
    SpectralNorm,
    WeightStandardization,
    energy_rank,
    minmax_weight,
    spectral_norm_estimate,
    spectral_normalize,
    standardize_weight,
    svd_denoise,
)

__all__ = [
    "ACTIVATIONS",
    "DROPOUT_MODES",
    "INITS",
    "NORMS",
    "BatchNorm",
    "DropConnect",
    "Dropout",
    "GaussianNoise",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "Linear",
    "MemberRandom",
    "MinMaxWeight",
    "SpectralNorm",
    "SwitchNorm",
    "WeightStandardization",
    "add_noise",
    "check_init",
    "default_groups",
    "dropout",
    "dropout_masked",
    "dropout_test",
    "energy_rank",
    "init_weight_",
    "make_activation",
    "minmax_weight",
    "mix_seed",
    "spectral_norm_estimate",
    "spectral_normalize",
    "standardize_weight",
    "svd_denoise",
]
