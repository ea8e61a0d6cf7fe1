"""A small fully convolutional population (E4): per-pixel outputs for dense targets, or class scores.

    [input dropout] -> view as [C, H, W] -> (conv k x k -> norm/activation -> dropout [+ skip]) x L
    -> 1x1 convolution to `maps` channels
    -> readout `flatten`: the maps as they are, [maps * H * W] logits (one per pixel and map: a dense target
       such as a segmentation mask, task `dense`); readout `gap`: their global average, [n_out] class scores

No pooling and no dense layer, so the network is equivariant to shifts of its input (up to the zero padding at
the border): a shifted image gives a shifted mask. Long, Shelhamer & Darrell, "Fully convolutional networks for
semantic segmentation", CVPR 2015; Lin et al., "Network in network", ICLR 2014 (global average readout).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig, RecipeError
from ..nn import Conv, Dropout, MemberRandom, global_avg_pool, make_activation
from .base import ParamRole, Population
from .convnets import _check_conv_keys, _init_layers, _norm_factory, check_input_shape, conv_roles, norm_roles
from .options import common_model_args


class FCN(Population):
    """Conv blocks that keep the positions, then a 1x1 convolution; see the module docstring."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        input_shape: tuple[int, ...],
        channels: list[int],
        seeds: list[int],
        kernel_size: int = 3,
        activation: str = "relu",
        slope: float = 0.01,
        dropout: list[list[float]] | None = None,
        norm: str = "none",
        norm_position: str = "before",
        bn_momentum: float = 0.1,
        norm_eps: float = 1e-5,
        residual: bool = False,
        residual_scale: float = 1.0,
        readout: str = "gap",
        init: str = "he_normal",
        dropout_mode: str = "inverted",
    ) -> None:
        super().__init__()
        members = len(seeds)
        self.members, self.random = members, MemberRandom(seeds)
        self.input_shape, self.dims = tuple(input_shape), len(input_shape) - 1
        positions = math.prod(input_shape[1:])
        if readout == "flatten" and n_out % positions:
            raise RecipeError(f"model.readout: kind 'fcn' with readout 'flatten' gives maps of {positions} positions, "
                              f"so the targets must hold a multiple of {positions} values per row, got {n_out}")
        self.readout, self.maps = readout, (n_out // positions if readout == "flatten" else n_out)
        self.norm_position, self.residual, self.has_norm = norm_position, residual, norm != "none"
        self.residual_scale, self.pool_kind = residual_scale, "none"
        dropout = dropout or [[0.0] * members for _ in range(1 + len(channels))]
        make_norm = _norm_factory(norm, bn_momentum, norm_eps)
        bias = not (norm == "batch" and norm_position == "before")
        sizes = [input_shape[0], *channels]
        self.input_dropout = Dropout(dropout[0], random=self.random, stream=0, mode=dropout_mode)
        self.convs = nn.ModuleList(
            Conv(members, a, b, kernel_size, dims=self.dims, padding=kernel_size // 2, bias=bias)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.norms = nn.ModuleList(make_norm(members, c) for c in channels)
        self.dropouts = nn.ModuleList(
            Dropout(p, random=self.random, stream=i + 1, mode=dropout_mode) for i, p in enumerate(dropout[1:])
        )
        self.pooled = [False] * len(channels)
        self.output = Conv(members, channels[-1], self.maps, 1, dims=self.dims)
        self.activation = make_activation(activation, slope=slope)
        _init_layers([*self.convs, self.output], init, self.random.seeds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.select_inputs(x)
        h = self.input_dropout(x) if self.input_dropout.acts else x
        h = h.reshape(*h.shape[:-1], *self.input_shape)  # [B, C, *S] or [M, B, C, *S]
        for conv, norm, drop in zip(self.convs, self.norms, self.dropouts):
            z = conv(h)
            if self.has_norm and self.norm_position == "before":
                z = norm(z)
            z = self.activation(z)
            if self.has_norm and self.norm_position == "after":
                z = norm(z)
            if drop.acts:
                z = drop(z)
            same = self.residual and h.shape[-self.dims - 1:] == z.shape[-self.dims - 1:]
            h = torch.add(h, z, alpha=self.residual_scale) if same else z
        maps = self.output(h)  # [M, B, maps, *S]
        return global_avg_pool(maps) if self.readout == "gap" else maps.reshape(*maps.shape[:2], -1)

    def param_roles(self) -> list[ParamRole]:
        roles = []
        for layer, conv in enumerate(self.convs):
            roles += conv_roles(f"convs.{layer}", conv, layer)
        roles += conv_roles("output", self.output, len(self.convs))
        for layer, norm in enumerate(self.norms):
            roles += norm_roles(f"norms.{layer}", norm, layer)
        return roles


def build_fcn(cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int]) -> FCN:
    _check_conv_keys(cfg, lists=False)  # channels, one odd kernel size
    if cfg.stride != 1:
        raise RecipeError(f"model.stride: kind 'fcn' takes stride 1 (its outputs keep every position), got {cfg.stride}")
    if cfg.head_widths:
        raise RecipeError(f"model.head_widths: kind 'fcn' has no dense layers, got {cfg.head_widths}; leave it empty")
    return FCN(
        n_in,
        n_out,
        input_shape=check_input_shape(cfg.input_shape, n_in),
        channels=cfg.channels,
        kernel_size=cfg.kernel_size,
        **common_model_args(cfg, seeds),
        norm_position=cfg.norm_position,
        residual=cfg.residual,
        residual_scale=cfg.residual_scale,
        readout=cfg.readout,
    )
