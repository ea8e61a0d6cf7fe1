"""Old import path of the convolutional populations: they live in `tamenet.models.convnets`."""

from .models.convnets import (  # noqa: F401
    CNN, BasicBlock, ResNet, build_cnn, build_resnet, check_input_shape, conv_roles, linear_roles, norm_roles,
)
from .models.options import cnn_dropout_layers, resnet_dropout_layers  # noqa: F401
