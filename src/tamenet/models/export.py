"""Any member of a population as a plain PyTorch model (`export_member`).

The exported model is an `nn.Sequential` of PyTorch's own layers (`nn.Linear`, `nn.Conv1d/2d`,
`nn.BatchNorm1d/2d`, `nn.LayerNorm`, `nn.GroupNorm`, `nn.InstanceNorm1d/2d`, activations, pooling,
`nn.Flatten`, `nn.Unflatten`, `nn.Dropout`) and a few small plain modules defined here where
PyTorch has none: `Standardize` (the training split's `(x - mean) / std`), `InputMask` (input
selection), `Scale` (classic dropout's test-time factor), `Residual` (a skip connection or a
ResNet basic block), `SwitchNorm` (switchable normalization of one network) and `GroupNorm` (an
`nn.GroupNorm` applying its affine step after normalizing, as tamenet does, see there). It takes
inputs [B, F] and gives member m's outputs [B, K]; it holds copies of member m's tensors, so it
trains, pickles and changes without touching the population.

What is kept and what is left out:

* dense weights are stored [M, in, out] in tamenet and copied as `nn.Linear`'s [out, in];
  convolution weights [M, C_out, C_in, *k] as they are;
* a weight normalization (`model.weight_norm`: standardize, minmax, spectral) is folded into the
  dense weight: the effective weight of eval mode, computed once (spectral normalization divides by
  sigma at its stored power-iteration vector). The exported weight is then an ordinary parameter,
  no longer reparametrized;
* normalizations keep their affine parameters, BatchNorm (and SwitchNorm's batch branch) its
  running statistics, used in eval mode;
* dropout becomes `nn.Dropout(p_m)` where member m's drop probability is above 0; classic dropout
  (`model.dropout_mode: classic`) is `nn.Dropout(p)` followed by `Scale(1 - p)`, which in training
  gives `x * mask` (the inverted scale 1/(1-p) undone) and at test `(1 - p) x`, as tamenet's;
* DropConnect, Gaussian noise on hidden units and on weights act in training only and are left out.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ..compress.activations import ActivationQuantizer, with_input_quantizer
from ..compress.pruning import PruneMasks
from ..compress.qat import WeightQuantizer
from ..nn import BatchNorm, Conv, DropConnect, Dropout, GaussianNoise, InstanceNorm, LayerNorm, Linear
from ..nn import GroupNorm as PopulationGroupNorm, MinMaxWeight, SpectralNorm, SwitchNorm as PopulationSwitchNorm
from ..nn import WeightStandardization
from .base import Population, Wrapped
from .convnets import CNN, BasicBlock, ResNet
from .fcn import FCN
from .mlp import MLP


# ---------------------------------------------------------------------------------------------------------------
# Plain modules where PyTorch has none


class Standardize(nn.Module):
    """`(x - mean) / std` per input column, with the training split's mean and std [F] as buffers.

    The buffers are float64 and the difference is taken in their precision, then cast to the layers'
    dtype (float32, or what `.double()` / `.half()` made them; the raw rows may come as float64 from
    NumPy): the same numbers as tamenet's own preprocessing (`SplitData.transform_inputs`)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())
        self.register_buffer("out_dtype", torch.zeros(0, dtype=dtype), persistent=False)  # follows .to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.to(self.mean.dtype) - self.mean) / self.std).to(self.out_dtype.dtype)

    def extra_repr(self) -> str:
        return f"features={self.mean.numel()}"


class Scale(nn.Module):
    """`x * factor` with a fixed factor (a buffer, not trained): classic dropout's `1 - p`."""

    def __init__(self, factor: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("factor", torch.as_tensor(factor).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={float(self.factor):.6g}"


class InputMask(Scale):
    """Input selection: `x * mask` with mask [F] (1: an input the member sees, 0: one it does not)."""

    @property
    def mask(self) -> torch.Tensor:
        return self.factor

    def extra_repr(self) -> str:
        return f"kept={int(self.mask.count_nonzero())} of {self.mask.numel()} inputs"


class Residual(nn.Module):
    """`activation(shortcut(x) + scale * body(x))`: a skip connection (`shortcut` None is the identity,
    `activation` None none), or a ResNet basic block with its 1x1 projection as `shortcut`."""

    def __init__(self, body: nn.Module, *, scale: float = 1.0, shortcut: nn.Module | None = None,
                 activation: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.shortcut, self.activation, self.scale = body, shortcut, activation, float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        out = torch.add(skip, self.body(x), alpha=self.scale)
        return out if self.activation is None else self.activation(out)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` (the same parameters, state dict and statistics) that applies gamma and beta after
    normalizing, `beta + gamma * group_norm(x)`, in that order, as `tamenet.nn.GroupNorm` does.

    PyTorch's kernel fuses the affine step into the normalization, which rounds differently; with few
    channels per group (dense layers: 2 by default) the normalization is ill-conditioned and that
    rounding grew to 1e-4 in a network's outputs. A state dict loads into a plain `nn.GroupNorm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = nn.functional.group_norm(x, self.num_groups, eps=self.eps)
        if not self.affine:
            return normed
        shape = (1, self.num_channels) + (1,) * (x.dim() - 2)
        return torch.addcmul(self.bias.view(shape), normed, self.weight.view(shape))


class SwitchNorm(nn.Module):
    """Switchable normalization of one network (Luo et al., ICLR 2019) on [B, C] or [B, C, *spatial]:
    a softmax mix of batch, layer and instance statistics (batch and layer only for dense inputs),
    the batch branch's running averages replacing its statistics in eval mode. Member by member the
    same computation as `tamenet.nn.SwitchNorm`, in training and in eval mode."""

    def __init__(self, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.mean_weight = nn.Parameter(torch.ones(3))
        self.var_weight = nn.Parameter(torch.ones(3))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = x.dim() == 2
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)  # [B, C, P], P = 1 for dense inputs
        var_in, mean_in = torch.var_mean(flat, dim=-1, unbiased=False)  # [B, C]
        square_in = var_in + mean_in.square()
        mean_ln = mean_in.mean(1, keepdim=True)  # [B, 1]
        var_ln = square_in.mean(1, keepdim=True) - mean_ln.square()
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)  # [1, C]
            var_bn = square_in.mean(0, keepdim=True) - mean_bn.square()
            count = b * flat.shape[-1]
            if count < 2:
                raise ValueError(f"SwitchNorm in training needs more than one value per channel, got {list(x.shape)}")
            with torch.no_grad():
                self.running_mean.lerp_(mean_bn.squeeze(0), self.momentum)
                self.running_var.lerp_(var_bn.squeeze(0).clamp_min(0.0) * (count / (count - 1)), self.momentum)
        else:
            mean_bn, var_bn = self.running_mean.unsqueeze(0), self.running_var.unsqueeze(0)
        used = 2 if dense else 3
        w_mean = torch.softmax(self.mean_weight[:used], dim=-1)
        w_var = torch.softmax(self.var_weight[:used], dim=-1)
        mean = w_mean[0] * mean_bn + w_mean[1] * mean_ln
        var = w_var[0] * var_bn + w_var[1] * var_ln
        if not dense:
            mean = mean + w_mean[2] * mean_in
            var = var + w_var[2] * var_in
        scale = torch.rsqrt(var.clamp_min(0.0) + self.eps)  # [B, C]
        normed = (flat - mean.unsqueeze(-1)) * scale.unsqueeze(-1)
        shape = (1, c) + (1,) * (x.dim() - 2)
        return torch.addcmul(self.bias.view(shape), normed.view(x.shape), self.weight.view(shape))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, eps={self.eps}, momentum={self.momentum}"


class Probabilities(nn.Module):
    """Class probabilities `softmax(logits)` [B, K], computed in float32: a delivered classifier's last layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


class TargetUnits(nn.Module):
    """Regression outputs [B, 1] in the target's own units: `value = output * std + mean` [B] (the training
    split's target scaler; 0 and 1 when the target was not standardized): a delivered regressor's last layer."""

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] * self.std + self.mean

    def extra_repr(self) -> str:
        return f"mean={float(self.mean):.6g}, std={float(self.std):.6g}"


# ---------------------------------------------------------------------------------------------------------------
# One population layer -> one plain layer of member m


def _copy(t: torch.Tensor) -> torch.Tensor:
    """A detached copy that shares no memory with the population."""
    return t.detach().clone().contiguous()


def eval_weight(linear: Linear) -> torch.Tensor:
    """The dense weight W [M, in, out] the layer uses in eval mode: its weight normalization applied
    (on a copy in eval mode, so the population's buffers stay as they are), then its fake quantization
    (the exported weights are the dequantized values); noise and DropConnect, training-only, are left out."""
    with torch.no_grad():
        weight = linear.weight.detach()
        if linear.weight_norm is not None:
            weight = copy.deepcopy(linear.weight_norm).eval()(weight)
        return weight if linear.weight_quant is None else linear.weight_quant(weight)


def plain_linear(linear: Linear, m: int) -> nn.Module:
    """Member m's dense layer as `nn.Linear` (weight [out, in] = W[m]^T, weight norm folded in)."""
    weight = eval_weight(linear)[m]
    out = nn.utils.skip_init(nn.Linear, linear.in_features, linear.out_features, bias=linear.bias is not None,
                             device=weight.device, dtype=weight.dtype)
    out.weight = nn.Parameter(_copy(weight.t()))
    if linear.bias is not None:
        out.bias = nn.Parameter(_copy(linear.bias[m]))
    return with_input_quantizer(linear, m, out)  # quantized activations: behind their frozen grid


PLAIN_CONVS = {1: nn.Conv1d, 2: nn.Conv2d}
PLAIN_BATCH_NORMS = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
PLAIN_INSTANCE_NORMS = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d}
PLAIN_MAX_POOLS = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
PLAIN_AVG_POOLS = {1: nn.AvgPool1d, 2: nn.AvgPool2d}
PLAIN_GLOBAL_POOLS = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


def plain_conv(conv: Conv, m: int) -> nn.Module:
    """Member m's convolution as `nn.Conv1d/2d` with the same kernel, stride and padding (fake quantization folded in)."""
    with torch.no_grad():
        weight = conv.effective_weight().detach()
    out = nn.utils.skip_init(PLAIN_CONVS[conv.dims], conv.in_channels, conv.out_channels, conv.kernel_size,
                             stride=conv.stride, padding=conv.padding, bias=conv.bias is not None,
                             device=weight.device, dtype=weight.dtype)
    out.weight = nn.Parameter(_copy(weight[m]))
    if conv.bias is not None:
        out.bias = nn.Parameter(_copy(conv.bias[m]))
    return with_input_quantizer(conv, m, out)


def _set_affine(out: nn.Module, norm: nn.Module, m: int) -> nn.Module:
    out.weight = nn.Parameter(_copy(norm.weight[m]))
    out.bias = nn.Parameter(_copy(norm.bias[m]))
    return out


def _set_running(out: nn.Module, norm: nn.Module, m: int) -> nn.Module:
    with torch.no_grad():
        out.running_mean.copy_(norm.running_mean[m])
        out.running_var.copy_(norm.running_var[m])
    return out


def plain_norm(norm: nn.Module, m: int, *, dims: int, where: str) -> nn.Module | None:
    """Member m's normalization of dense (dims 0) or convolutional (dims 1, 2) activations as a PyTorch
    layer (None for no normalization): BatchNorm1d/2d with its running statistics, LayerNorm (over the
    channels and positions of a convolution: GroupNorm with one group, the same computation and a
    gamma, beta per channel), InstanceNorm1d/2d with affine parameters, GroupNorm, or `SwitchNorm`."""
    if isinstance(norm, nn.Identity):
        return None
    factory = {"device": norm.weight.device, "dtype": norm.weight.dtype} if hasattr(norm, "weight") else {}
    if isinstance(norm, BatchNorm):
        out = PLAIN_BATCH_NORMS[dims](norm.channels, eps=norm.eps, momentum=norm.momentum, **factory)
        return _set_running(_set_affine(out, norm, m), norm, m)
    if isinstance(norm, LayerNorm):
        out = nn.LayerNorm(norm.channels, eps=norm.eps, **factory) if dims == 0 else \
            GroupNorm(1, norm.channels, eps=norm.eps, **factory)
        return _set_affine(out, norm, m)
    if isinstance(norm, InstanceNorm) and dims > 0:
        out = PLAIN_INSTANCE_NORMS[dims](norm.channels, eps=norm.eps, momentum=norm.momentum, affine=True,
                                         track_running_stats=norm.track_running_stats, **factory)
        out = _set_affine(out, norm, m)
        return _set_running(out, norm, m) if norm.track_running_stats else out
    if isinstance(norm, PopulationGroupNorm):
        return _set_affine(GroupNorm(norm.groups, norm.channels, eps=norm.eps, **factory), norm, m)
    if isinstance(norm, PopulationSwitchNorm):
        out = _set_running(_set_affine(SwitchNorm(norm.channels, momentum=norm.momentum, eps=norm.eps), norm, m),
                           norm, m)
        out.mean_weight = nn.Parameter(_copy(norm.mean_weight[m]))
        out.var_weight = nn.Parameter(_copy(norm.var_weight[m]))
        return out.to(**factory)
    raise cannot_export(where, norm)


def plain_dropout(drop: Dropout, m: int) -> list[nn.Module]:
    """Member m's dropout: [] when its drop probability is 0, `[nn.Dropout(p)]` (inverted), or
    `[nn.Dropout(p), Scale(1 - p)]` (classic: `x * mask` in training, `(1 - p) x` at test)."""
    p = drop.p[m]
    if not float(p) > 0.0:
        return []
    layers: list[nn.Module] = [nn.Dropout(float(p))]
    if drop.mode == "classic":
        layers.append(Scale(1.0 - p))  # the float32 factor tamenet's test pass multiplies by
    return layers


def plain_activation(activation: nn.Module, *, where: str) -> nn.Module:
    """A copy of an element-wise activation from `torch.nn` (ReLU, LeakyReLU with its slope, GELU, ...)."""
    if type(activation).__module__ != "torch.nn.modules.activation":
        raise cannot_export(where, activation)
    return copy.deepcopy(activation)


def cannot_export(where: str, module: nn.Module) -> TypeError:
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    return TypeError(f"export_member: cannot export the module {where!r} of type {kind}: "
                     "no plain PyTorch equivalent is known for it")


# ---------------------------------------------------------------------------------------------------------------
# Modules a population may hold, checked before exporting

TRAINING_ONLY = (DropConnect, GaussianNoise, PruneMasks)
"""Population modules that act in training only and have no place in the exported model (pruned weights are
zeros already: their masks stay behind)."""

KNOWN_MODULES = (
    MLP, CNN, ResNet, FCN, BasicBlock, nn.ModuleList, nn.Identity, Linear, Conv, Dropout, *TRAINING_ONLY,
    BatchNorm, LayerNorm, InstanceNorm, PopulationGroupNorm, PopulationSwitchNorm,
    WeightStandardization, MinMaxWeight, SpectralNorm, WeightQuantizer, ActivationQuantizer,
)
"""Module types `export_member` knows how to carry over (activations from `torch.nn` besides)."""


def check_known_modules(population: Population) -> None:
    """Raise TypeError naming the first module of the population that export does not know."""
    for where, module in population.named_modules():
        if type(module) in KNOWN_MODULES or type(module).__module__ == "torch.nn.modules.activation":
            continue
        raise cannot_export(where or "(the population)", module)


# ---------------------------------------------------------------------------------------------------------------
# Model kinds


def _input_layers(population: Population, m: int) -> list[nn.Module]:
    """Input selection (the member's row of `input_mask`) and input dropout."""
    mask = population._buffers.get("input_mask")
    layers: list[nn.Module] = [] if mask is None else [InputMask(mask[m])]
    return layers + plain_dropout(population.input_dropout, m)


def _sequence(layers: list[nn.Module]) -> nn.Module:
    """One layer as itself, several as `nn.Sequential`."""
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def export_mlp(model: MLP, m: int) -> list[nn.Module]:
    """[mask] [dropout] (Linear -> norm/activation -> dropout [+ skip]) x L -> Linear."""
    layers = _input_layers(model, m)
    for i, linear in enumerate(model.hidden):
        norm = plain_norm(model.norms[i], m, dims=0, where=f"norms.{i}") if model.has_norm else None
        layers += _hidden_block(model, plain_linear(linear, m), norm, model.dropouts[i], m,
                                skip=linear.in_features == linear.out_features)
    return layers + [plain_linear(model.output, m)]


def _hidden_block(model: MLP | CNN | FCN, first: nn.Module, norm: nn.Module | None, dropout: nn.Module, m: int, *,
                  skip: bool) -> list[nn.Module]:
    """One hidden layer: first (linear or conv) -> norm/activation in the model's order -> dropout, wrapped in a
    residual connection when the model has them and the shapes allow (`skip`)."""
    body: list[nn.Module] = [first]
    if norm is not None and model.norm_position == "before":
        body.append(norm)
    body.append(plain_activation(model.activation, where="activation"))
    if norm is not None and model.norm_position == "after":
        body.append(norm)
    body += plain_dropout(dropout, m)
    return [Residual(_sequence(body), scale=model.residual_scale)] if model.residual and skip else body


def _global_average(dims: int) -> list[nn.Module]:
    """Mean over all positions: [B, C, *S] -> [B, C]."""
    return [PLAIN_GLOBAL_POOLS[dims](1), nn.Flatten(1)]


def export_cnn(model: CNN, m: int) -> list[nn.Module]:
    """[mask] [dropout] -> Unflatten to [C, *S] -> (conv -> norm/activation -> dropout [+ skip] -> [pool]) x L
    -> global average pooling or flatten -> (Linear -> activation -> dropout) x H -> Linear."""
    layers = _conv_blocks(model, m)
    layers += _global_average(model.dims) if model.readout == "gap" else [nn.Flatten(1)]
    for i, linear in enumerate(model.head):
        layers += [plain_linear(linear, m), plain_activation(model.activation, where="activation")]
        layers += plain_dropout(model.head_dropouts[i], m)
    return layers + [plain_linear(model.output, m)]


def export_fcn(model: FCN, m: int) -> list[nn.Module]:
    """The cnn's blocks -> 1x1 conv -> global average (class scores) or flatten (one logit per pixel and map)."""
    layers = _conv_blocks(model, m) + [plain_conv(model.output, m)]
    return layers + (_global_average(model.dims) if model.readout == "gap" else [nn.Flatten(1)])


def _conv_blocks(model: CNN | FCN, m: int) -> list[nn.Module]:
    """[mask] [dropout] -> Unflatten to [C, *S] -> (conv -> norm/activation -> dropout [+ skip] -> [pool]) x L."""
    dims = model.dims
    layers = _input_layers(model, m) + [nn.Unflatten(1, model.input_shape)]
    pools = {"max": PLAIN_MAX_POOLS, "avg": PLAIN_AVG_POOLS}
    for i, (conv, pooled) in enumerate(zip(model.convs, model.pooled)):
        norm = plain_norm(model.norms[i], m, dims=dims, where=f"norms.{i}") if model.has_norm else None
        # stride 1 and padding k // 2 keep the positions: the shapes agree when the channels do
        layers += _hidden_block(model, plain_conv(conv, m), norm, model.dropouts[i], m,
                                skip=conv.in_channels == conv.out_channels and conv.stride == 1)
        if pooled:
            layers.append(pools[model.pool_kind][dims](2, 2))
    return layers


def _optional(layer: nn.Module | None) -> list[nn.Module]:
    return [] if layer is None else [layer]


def export_basic_block(block: BasicBlock, m: int, *, dims: int, where: str) -> Residual:
    """`act(norm2(conv2(dropout(act(norm1(conv1(x)))))) + shortcut(x))`, the shortcut a 1x1 projection or x."""
    body = [plain_conv(block.conv1, m), *_optional(plain_norm(block.norm1, m, dims=dims, where=f"{where}.norm1")),
            plain_activation(block.activation, where=f"{where}.activation"), *plain_dropout(block.dropout, m),
            plain_conv(block.conv2, m), *_optional(plain_norm(block.norm2, m, dims=dims, where=f"{where}.norm2"))]
    shortcut = None
    if block.shortcut is not None:
        norm = plain_norm(block.shortcut_norm, m, dims=dims, where=f"{where}.shortcut_norm")
        shortcut = _sequence([plain_conv(block.shortcut, m), *_optional(norm)])
    return Residual(nn.Sequential(*body), shortcut=shortcut,
                    activation=plain_activation(block.activation, where=f"{where}.activation"))


def export_resnet(model: ResNet, m: int) -> list[nn.Module]:
    """[mask] [dropout] -> Unflatten -> stem conv -> norm -> activation -> basic blocks -> global average -> Linear."""
    dims = model.dims
    layers = _input_layers(model, m) + [nn.Unflatten(1, model.input_shape), plain_conv(model.stem, m),
                                        *_optional(plain_norm(model.stem_norm, m, dims=dims, where="stem_norm")),
                                        plain_activation(model.activation, where="activation")]
    layers += [export_basic_block(block, m, dims=dims, where=f"blocks.{i}") for i, block in enumerate(model.blocks)]
    return layers + _global_average(dims) + [plain_linear(model.output, m)]


EXPORTERS = {MLP: export_mlp, CNN: export_cnn, ResNet: export_resnet, FCN: export_fcn}
"""Population class -> function(population, m) giving member m's layers in order (preprocessing apart)."""


# ---------------------------------------------------------------------------------------------------------------
# The entry point


def input_size(population: MLP | CNN | ResNet) -> int:
    """F, the features of one input row: the first dense layer's inputs, or prod(input_shape) of a convnet."""
    if isinstance(population, MLP):
        return population.hidden[0].in_features if len(population.hidden) else population.output.in_features
    return math.prod(population.input_shape)


def _check_member(population: Population, m: Any) -> int:
    if isinstance(m, bool) or not isinstance(m, int):
        raise TypeError(f"export_member: expected the member as an integer index, got {type(m).__name__} {m!r}")
    if not 0 <= m < population.members:
        raise ValueError(f"export_member: expected a member index in [0, {population.members - 1}], got {m}")
    return m


def _standardize_layer(preprocessing: dict[str, Any], n_in: int | None) -> list[nn.Module]:
    """The preprocessing's input scaler as a `Standardize` layer ([] when inputs were not standardized)."""
    if n_in is not None and "n_features" in preprocessing and int(preprocessing["n_features"]) != n_in:
        raise ValueError(f"export_member: the preprocessing is for {preprocessing['n_features']} inputs, "
                         f"the population takes {n_in}")
    scaler = preprocessing.get("scaler")
    if scaler is None:
        return []
    mean = torch.as_tensor(scaler["mean"], dtype=torch.float64).reshape(-1)
    std = torch.as_tensor(scaler["std"], dtype=torch.float64).reshape(-1)
    return [Standardize(mean, std)]


def _describe(module: nn.Module, m: int, preprocessing: dict[str, Any] | None) -> nn.Module:
    """Attach what the outputs mean: `member`, `task`, `classes`, `feature_names`, `target_mean`,
    `target_std` (None where unknown) and `outputs`, a sentence saying what the output is."""
    pre = preprocessing or {}
    task, classes, target = pre.get("task"), pre.get("classes"), pre.get("target_scaler")
    module.member, module.task = m, task
    module.classes = None if classes is None else list(classes)
    module.feature_names = None if pre.get("feature_names") is None else list(pre["feature_names"])
    module.target_mean = None if target is None else float(torch.as_tensor(target["mean"]).reshape(-1)[0])
    module.target_std = None if target is None else float(torch.as_tensor(target["std"]).reshape(-1)[0])
    inputs = "raw rows [B, F]" if pre.get("scaler") is not None else (
        "rows [B, F] as given (no standardization was fitted)" if preprocessing is not None
        else "rows [B, F] standardized as in training")
    if task == "classification":
        what = "logits [B, K] over `classes` (softmax gives the probabilities)"
    elif task == "regression" and target is not None:
        what = "standardized target values [B, 1] (value = output * target_std + target_mean)"
    elif task == "regression":
        what = "target values [B, 1]"
    else:
        what = "member outputs [B, K] (logits for classes, values for regression)"
    module.outputs = f"takes {inputs}; gives {what}"
    return module


def export_member(population: Population, m: int, *, preprocessing: dict[str, Any] | None = None) -> nn.Module:
    """Member m of a population as a plain PyTorch model: member m's outputs [B, K] for inputs [B, F].

    The result is an `nn.Sequential` of PyTorch layers (see this module's docstring for what is kept,
    what is folded in, and what is left out), with member m's weights copied: it shares no memory with
    the population, its parameters train (`requires_grad`), it pickles and works with `torch.export`.
    In eval mode it gives `population(x)[m]` (eval mode) up to rounding. `models.Wrapped` (a user's own
    module) is exported as a deep copy of that module.

    `preprocessing` (`TrainedModel.preprocessing`, from `SplitData.preprocessing()`) adds the training
    split's standardization as a first layer, so the model takes raw rows; without it the model takes
    standardized rows, as the population does. The returned module carries `member`, `task`,
    `classes` (the label of each logit), `feature_names`, `target_mean` and `target_std` (the regression
    target's scaler: outputs are standardized values, `value = output * target_std + target_mean`), None
    where unknown, and `outputs`, a sentence saying what it takes and gives. Raises TypeError for a
    population (or a module in it) that has no plain equivalent, naming it.
    """
    if not isinstance(population, Population):
        raise TypeError(f"export_member: expected a tamenet Population, got {type(population).__name__}")
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise TypeError("export_member: expected preprocessing to be the dict of TrainedModel.preprocessing "
                        f"(SplitData.preprocessing()), got {type(preprocessing).__name__}")
    m = _check_member(population, m)
    if isinstance(population, Wrapped):
        layers, n_in = [copy.deepcopy(population.module)], None
    else:
        exporter = EXPORTERS.get(type(population))
        if exporter is None:
            raise TypeError(f"export_member: cannot export a population of type {type(population).__qualname__}; "
                            f"expected one of {', '.join(c.__name__ for c in EXPORTERS)} or Wrapped")
        check_known_modules(population)
        layers, n_in = exporter(population, m), input_size(population)
    if preprocessing is not None:
        layers = _standardize_layer(preprocessing, n_in) + layers
    return _describe(nn.Sequential(*layers), m, preprocessing)


__all__ = [
    "EXPORTERS", "GroupNorm", "InputMask", "KNOWN_MODULES", "Probabilities", "Residual", "Scale", "Standardize",
    "SwitchNorm", "TargetUnits",
    "TRAINING_ONLY", "check_known_modules", "eval_weight", "export_member", "input_size", "plain_activation",
    "plain_conv", "plain_dropout", "plain_linear", "plain_norm",
]
