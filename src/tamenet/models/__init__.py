"""Networks as populations: the base and parameter roles, the model kinds, their builders, and
export of a member as plain PyTorch.

    base.py      Population, ParamRole, Wrapped (a user's module as a population of one)
    options.py   the recipe's model options as constructor arguments; dropout sites per kind
    mlp.py       MLP and the linear model
    convnets.py  CNN and ResNet
    build.py     MODELS (kind -> builder), build_model, count_parameters
"""

from .base import ParamRole, Population, Wrapped
from .build import MODELS, build_model, count_parameters
from .convnets import CNN, BasicBlock, ResNet, build_cnn, build_resnet
from .export import export_member
from .mlp import DROPCONNECT_STREAM, HIDDEN_NOISE_STREAM, MLP, WEIGHT_NOISE_STREAM, WEIGHT_NORMS, build_linear, build_mlp
from .options import (
    DROPOUT_LAYERS, cnn_dropout_layers, common_model_args, dropout_layers, member_numbers, resnet_dropout_layers,
    resolve_dropout,
)

__all__ = [
    "CNN", "DROPCONNECT_STREAM", "DROPOUT_LAYERS", "HIDDEN_NOISE_STREAM", "MLP", "MODELS", "WEIGHT_NOISE_STREAM",
    "WEIGHT_NORMS", "BasicBlock", "ParamRole", "Population", "ResNet", "Wrapped", "build_cnn", "build_linear",
    "build_mlp", "build_model", "build_resnet", "cnn_dropout_layers", "common_model_args", "count_parameters",
    "dropout_layers", "export_member", "member_numbers", "resnet_dropout_layers", "resolve_dropout",
]
