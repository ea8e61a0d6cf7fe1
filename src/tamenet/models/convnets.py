"""Convolutional populations (A1, F4): a plain CNN and a small ResNet, 1-D or 2-D after the input's shape.

Data stay flat rows [N, F]; the model views each row as `input_shape`, [C, L] (a signal, 1-D
convolutions) or [C, H, W] (an image, 2-D convolutions), with prod(input_shape) = F. Every
convolution is a population layer (`tamenet.nn.Conv`: one grouped convolution for all members),
so member m trains exactly as the same network trained alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig, RecipeError
from ..nn import NORMS, Conv, Dropout, Linear, MemberRandom, global_avg_pool, init_weight_, make_activation
from ..nn import pool as apply_pool
from ..registry import lookup
from .base import ParamRole, Population
from .options import common_model_args


def conv_roles(prefix: str, conv: Conv, layer: int) -> list[ParamRole]:
    """A convolution's weight (a unit's incoming weights: axes C_in, *k of [M, C_out, C_in, *k]) and bias."""
    roles = [ParamRole(f"{prefix}.weight", conv.weight, "weight", layer,
                       fan_in_dims=tuple(range(2, conv.weight.dim())))]
    if conv.bias is not None:
        roles.append(ParamRole(f"{prefix}.bias", conv.bias, "bias", layer))
    return roles


def linear_roles(prefix: str, linear: Linear, layer: int) -> list[ParamRole]:
    roles = [ParamRole(f"{prefix}.weight", linear.weight, "weight", layer)]
    if linear.bias is not None:
        roles.append(ParamRole(f"{prefix}.bias", linear.bias, "bias", layer))
    return roles


def norm_roles(prefix: str, norm: nn.Module, layer: int) -> list[ParamRole]:
    return [ParamRole(f"{prefix}.{name}", param, "norm", layer) for name, param in norm.named_parameters()]


def check_input_shape(shape: list[int] | tuple[int, ...] | None, n_in: int) -> tuple[int, ...]:
    """The shape a row is viewed as: [C, L] or [C, H, W] with prod = n_in; [1, n_in] when none is given."""
    if shape is None:
        return (1, n_in)
    shape = tuple(shape)
    if len(shape) not in (2, 3) or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise RecipeError(
            f"model.input_shape: expected [C, L] (signals) or [C, H, W] (images) of positive integers, got {list(shape)}"
        )
    if math.prod(shape) != n_in:
        raise RecipeError(
            f"model.input_shape: {list(shape)} holds {math.prod(shape)} values, but the data have {n_in} features per row"
        )
    return shape


def _norm_factory(norm: str, momentum: float, eps: float):
    cls = lookup(NORMS, norm, "norm")
    return lambda members, channels: cls(members, channels, momentum=momentum, eps=eps) if cls else nn.Identity()


def _init_layers(layers: list[nn.Module], init: str, seeds: list[int]) -> None:
    """Member m's weights of layer i from the generator seeded by (seeds[m], i); fan-in/out count kernels."""
    for layer, module in enumerate(layers):
        if isinstance(module, Conv):
            fan_in, fan_out = module.fan_in, module.fan_out
        else:
            fan_in, fan_out = module.in_features, module.out_features
        init_weight_(module.weight, init, seeds=seeds, layer=layer, fan_in=fan_in, fan_out=fan_out)


class CNN(Population):
    """Plain convolutional network:

        [input dropout] -> view as [C, *S] -> (conv k x k -> norm/activation -> dropout [+ skip] -> [2x pool]) x L
        -> global average pooling or flatten -> (Linear -> activation -> dropout) x H -> Linear

    Block i's convolution has kernel `kernel_size[i]` (k odd), padding k // 2 and stride `stride[i]`: with
    stride 1 it keeps the spatial size, with stride s it gives floor((S - 1) / s) + 1 positions (a single
    number applies to every block). With `residual`, a block
    whose input and output shapes agree adds its input (He et al., "Deep residual learning for image
    recognition", CVPR 2016). Pooling (max or average over 2 positions per axis) follows every
    `pool_every`-th block. A convolution followed by BatchNorm has no bias (BatchNorm's beta replaces it).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        input_shape: tuple[int, ...],
        channels: list[int],
        seeds: list[int],
        kernel_size: int | list[int] = 3,
        stride: int | list[int] = 1,
        activation: str = "relu",
        slope: float = 0.01,
        dropout: list[list[float]] | None = None,
        norm: str = "none",
        norm_position: str = "before",
        bn_momentum: float = 0.1,
        norm_eps: float = 1e-5,
        residual: bool = False,
        residual_scale: float = 1.0,
        pool: str = "max",
        pool_every: int = 1,
        readout: str = "gap",
        head_widths: list[int] | None = None,
        init: str = "he_normal",
        dropout_mode: str = "inverted",
    ) -> None:
        super().__init__()
        members = len(seeds)
        head_widths = list(head_widths or [])
        self.members, self.random = members, MemberRandom(seeds)
        self.input_shape, self.dims = tuple(input_shape), len(input_shape) - 1
        self.norm_position, self.residual, self.has_norm = norm_position, residual, norm != "none"
        self.residual_scale = residual_scale
        self.pool_kind, self.readout = pool, readout
        dropout = dropout or [[0.0] * members for _ in range(1 + len(channels) + len(head_widths))]
        make_norm = _norm_factory(norm, bn_momentum, norm_eps)
        bias = not (norm == "batch" and norm_position == "before")
        sizes = [input_shape[0], *channels]
        kernels, strides = per_block(kernel_size, len(channels)), per_block(stride, len(channels))
        self.input_dropout = Dropout(dropout[0], random=self.random, stream=0, mode=dropout_mode)
        self.convs = nn.ModuleList(
            Conv(members, a, b, k, dims=self.dims, stride=s, padding=k // 2, bias=bias)
            for a, b, k, s in zip(sizes[:-1], sizes[1:], kernels, strides)
        )
        self.norms = nn.ModuleList(make_norm(members, c) for c in channels)
        self.dropouts = nn.ModuleList(
            Dropout(p, random=self.random, stream=i + 1, mode=dropout_mode) for i, p in enumerate(dropout[1:1 + len(channels)])
        )
        self.pooled = [pool != "none" and (i + 1) % pool_every == 0 for i in range(len(channels))]
        spatial = list(input_shape[1:])
        for block, (conv, pooled) in enumerate(zip(self.convs, self.pooled)):
            spatial = [conv.output_size(n) for n in spatial]
            if pooled and min(spatial) < 2:
                raise RecipeError(
                    f"model.pool: block {block + 1} would pool an input of size {spatial} below one position; "
                    "pool less often (model.pool_every), use fewer blocks or pool: none"
                )
            spatial = [s // 2 for s in spatial] if pooled else spatial
        features = channels[-1] * (math.prod(spatial) if readout == "flatten" else 1)
        head_sizes = [features, *head_widths]
        self.head = nn.ModuleList(Linear(members, a, b) for a, b in zip(head_sizes[:-1], head_sizes[1:]))
        self.head_dropouts = nn.ModuleList(
            Dropout(p, random=self.random, stream=1 + len(channels) + i, mode=dropout_mode)
            for i, p in enumerate(dropout[1 + len(channels):])
        )
        self.output = Linear(members, head_sizes[-1], n_out)
        self.activation = make_activation(activation, slope=slope)
        _init_layers([*self.convs, *self.head, self.output], init, self.random.seeds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.select_inputs(x)
        h = self.input_dropout(x) if self.input_dropout.acts else x
        h = h.reshape(*h.shape[:-1], *self.input_shape)  # [B, C, *S] or [M, B, C, *S]
        for conv, norm, drop, pooled in zip(self.convs, self.norms, self.dropouts, self.pooled):
            z = conv(h)
            if self.has_norm and self.norm_position == "before":
                z = norm(z)
            z = self.activation(z)
            if self.has_norm and self.norm_position == "after":
                z = norm(z)
            if drop.acts:  # training, Monte-Carlo sampling, or classic dropout's test scaling
                z = drop(z)
            # a shared input [B, C, *S] broadcasts against z [M, B, C, *S]: compare channels and positions only
            same = self.residual and h.shape[-self.dims - 1:] == z.shape[-self.dims - 1:]
            h = torch.add(h, z, alpha=self.residual_scale) if same else z
            if pooled:
                h = apply_pool(h, self.pool_kind)
        h = global_avg_pool(h) if self.readout == "gap" else h.reshape(*h.shape[:2], -1)
        for linear, drop in zip(self.head, self.head_dropouts):
            h = self.activation(linear(h))
            if drop.acts:
                h = drop(h)
        return self.output(h)

    def param_roles(self) -> list[ParamRole]:
        roles = []
        for layer, conv in enumerate(self.convs):
            roles += conv_roles(f"convs.{layer}", conv, layer)
        for i, linear in enumerate(self.head):
            roles += linear_roles(f"head.{i}", linear, len(self.convs) + i)
        roles += linear_roles("output", self.output, len(self.convs) + len(self.head))
        for layer, norm in enumerate(self.norms):
            roles += norm_roles(f"norms.{layer}", norm, layer)
        return roles


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al., CVPR 2016), with dropout between its convolutions as in Wide ResNets
    (Zagoruyko & Komodakis, BMVC 2016):

        y = act( norm2(conv2( dropout(act(norm1(conv1(x)))) )) + shortcut(x) )

    conv1 carries the block's stride; the shortcut is the identity, or a 1x1 convolution with its norm
    (a projection) when the channels or the stride change.
    """

    def __init__(
        self, members: int, c_in: int, c_out: int, kernel_size: int, *, dims: int, stride: int,
        make_norm, bias: bool, activation: nn.Module, dropout: Dropout,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = Conv(members, c_in, c_out, kernel_size, dims=dims, stride=stride, padding=pad, bias=bias)
        self.norm1 = make_norm(members, c_out)
        self.conv2 = Conv(members, c_out, c_out, kernel_size, dims=dims, padding=pad, bias=bias)
        self.norm2 = make_norm(members, c_out)
        project = stride != 1 or c_in != c_out
        self.shortcut = Conv(members, c_in, c_out, 1, dims=dims, stride=stride, bias=bias) if project else None
        self.shortcut_norm = make_norm(members, c_out) if project else None
        self.activation, self.dropout = activation, dropout

    def convs(self) -> list[Conv]:
        return [self.conv1, self.conv2, *([self.shortcut] if self.shortcut is not None else [])]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.activation(self.norm1(self.conv1(h)))
        if self.dropout.acts:
            z = self.dropout(z)
        z = self.norm2(self.conv2(z))
        skip = h if self.shortcut is None else self.shortcut_norm(self.shortcut(h))
        return self.activation(z + skip)


class ResNet(Population):
    """A small ResNet:

        [input dropout] -> view as [C, *S] -> stem conv -> norm -> activation
        -> stages of `blocks` basic blocks with `channels[s]` channels (the first block of every stage
           after the first halves the positions with stride 2) -> global average pooling -> Linear

    (He et al., "Deep residual learning for image recognition", CVPR 2016, in the CIFAR form.) The
    norm always comes before the activation here; with BatchNorm the convolutions have no bias.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        input_shape: tuple[int, ...],
        channels: list[int],
        seeds: list[int],
        blocks: int = 1,
        kernel_size: int = 3,
        activation: str = "relu",
        slope: float = 0.01,
        dropout: list[list[float]] | None = None,
        norm: str = "batch",
        bn_momentum: float = 0.1,
        norm_eps: float = 1e-5,
        init: str = "he_normal",
        dropout_mode: str = "inverted",
    ) -> None:
        super().__init__()
        members = len(seeds)
        self.members, self.random = members, MemberRandom(seeds)
        self.input_shape, self.dims = tuple(input_shape), len(input_shape) - 1
        n_blocks = blocks * len(channels)
        dropout = dropout or [[0.0] * members for _ in range(1 + n_blocks)]
        make_norm = _norm_factory(norm, bn_momentum, norm_eps)
        bias = norm != "batch"
        self.activation = make_activation(activation, slope=slope)
        self.input_dropout = Dropout(dropout[0], random=self.random, stream=0, mode=dropout_mode)
        self.stem = Conv(members, input_shape[0], channels[0], kernel_size, dims=self.dims,
                         padding=kernel_size // 2, bias=bias)
        self.stem_norm = make_norm(members, channels[0])
        stages, c_in, spatial = [], channels[0], list(input_shape[1:])
        for s, c_out in enumerate(channels):
            for b in range(blocks):
                stride = 2 if s > 0 and b == 0 else 1
                if stride == 2 and min(spatial) < 2:
                    raise RecipeError(
                        f"model.channels: stage {s + 1} would halve an input of size {spatial} below one position; "
                        "use fewer stages"
                    )
                spatial = [(n - 1) // stride + 1 for n in spatial]
                drop = Dropout(dropout[1 + len(stages)], random=self.random, stream=1 + len(stages), mode=dropout_mode)
                stages.append(BasicBlock(members, c_in, c_out, kernel_size, dims=self.dims, stride=stride,
                                         make_norm=make_norm, bias=bias, activation=self.activation, dropout=drop))
                c_in = c_out
        self.blocks = nn.ModuleList(stages)
        self.output = Linear(members, channels[-1], n_out)
        _init_layers(self._weight_layers(), init, self.random.seeds)

    def _weight_layers(self) -> list[nn.Module]:
        """Convolutions and the output layer in the order data flow through them (layer numbers)."""
        return [self.stem, *(c for block in self.blocks for c in block.convs()), self.output]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.select_inputs(x)
        h = self.input_dropout(x) if self.input_dropout.acts else x
        h = h.reshape(*h.shape[:-1], *self.input_shape)
        h = self.activation(self.stem_norm(self.stem(h)))
        for block in self.blocks:
            h = block(h)
        return self.output(global_avg_pool(h))

    def param_roles(self) -> list[ParamRole]:
        roles = conv_roles("stem", self.stem, 0) + norm_roles("stem_norm", self.stem_norm, 0)
        layer = 1
        for i, block in enumerate(self.blocks):
            for name in ("conv1", "conv2", "shortcut"):
                conv = getattr(block, name)
                if conv is None:
                    continue
                roles += conv_roles(f"blocks.{i}.{name}", conv, layer)
                norm_name = "shortcut_norm" if name == "shortcut" else name.replace("conv", "norm")
                roles += norm_roles(f"blocks.{i}.{norm_name}", getattr(block, norm_name), layer)
                layer += 1
        return roles + linear_roles("output", self.output, layer)


def per_block(value: int | list[int], blocks: int) -> list[int]:
    """One number per conv block: a single number repeated, or a list of exactly `blocks` numbers."""
    return list(value) if isinstance(value, list) else [value] * blocks


def _check_conv_keys(cfg: ModelConfig, *, lists: bool) -> None:
    if not cfg.channels or any(c < 1 for c in cfg.channels):
        raise RecipeError(f"model.channels: expected a non-empty list of positive integers, got {cfg.channels}")
    for key in ("kernel_size", "stride"):
        value = getattr(cfg, key)
        if isinstance(value, list) and not lists:
            raise RecipeError(f"model.{key}: expected one number for kind {cfg.kind!r} (per-block lists are for "
                              f"kind 'cnn'), got {value}")
        if isinstance(value, list) and len(value) != len(cfg.channels):
            raise RecipeError(f"model.{key}: expected one number per conv block ({len(cfg.channels)}, as "
                              f"model.channels), got {len(value)}: {value}")
    if cfg.kind == "resnet" and cfg.stride != 1:
        raise RecipeError(f"model.stride: expected 1 for kind 'resnet' (its stages set their own strides), "
                          f"got {cfg.stride}")
    even = [k for k in per_block(cfg.kernel_size, len(cfg.channels)) if k % 2 == 0]
    if even:
        raise RecipeError(
            f"model.kernel_size: expected an odd size (padding k // 2 keeps the positions), got {cfg.kernel_size}"
        )


def build_cnn(cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int]) -> CNN:
    _check_conv_keys(cfg, lists=True)
    if any(w < 1 for w in cfg.head_widths):
        raise RecipeError(f"model.head_widths: expected positive integers, got {cfg.head_widths}")
    return CNN(
        n_in,
        n_out,
        input_shape=check_input_shape(cfg.input_shape, n_in),
        channels=cfg.channels,
        kernel_size=cfg.kernel_size,
        stride=cfg.stride,
        **common_model_args(cfg, seeds),
        norm_position=cfg.norm_position,
        residual=cfg.residual,
        residual_scale=cfg.residual_scale,
        pool=cfg.pool,
        pool_every=cfg.pool_every,
        readout=cfg.readout,
        head_widths=cfg.head_widths,
    )


def build_resnet(cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int]) -> ResNet:
    _check_conv_keys(cfg, lists=False)
    return ResNet(
        n_in,
        n_out,
        input_shape=check_input_shape(cfg.input_shape, n_in),
        channels=cfg.channels,
        blocks=cfg.blocks,
        kernel_size=cfg.kernel_size,
        **common_model_args(cfg, seeds),
    )
