"""Networks as populations: builders from a recipe, and the roles of their parameters.

A population holds M members that differ only in numbers (seeds, dropout rates, ...); its outputs
are [M, B, K]. A user's own `nn.Module` trains as a population of one through `Wrapped`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig, RecipeError
from .nn import NORMS, Dropout, Linear, MemberRandom, init_weight_, make_activation
from .registry import lookup


@dataclass(frozen=True)
class ParamRole:
    """One parameter and what it is: `weight` (penalized by default), `bias` or `norm`; `layer` counts weight layers from the input."""

    name: str
    param: nn.Parameter
    role: str
    layer: int
    stacked: bool = True  # has the leading member axis
    fan_in_dims: tuple[int, ...] = (1,)  # axes of the [M, ...] view holding one unit's incoming weights

    def per_member(self, t: torch.Tensor) -> torch.Tensor:
        """View a tensor shaped like this parameter as [M, ...]."""
        return t if self.stacked else t.unsqueeze(0)


class Population(nn.Module):
    """Base of every trainable population: `members`, its random source and its parameters' roles."""

    members: int
    random: MemberRandom

    def param_roles(self) -> list[ParamRole]:
        raise NotImplementedError


class MLP(Population):
    """Dense network: [dropout] -> (Linear -> norm/activation -> dropout [+ skip]) x L -> Linear.

    With `residual`, a hidden layer whose input and output widths agree adds its input (He et al., CVPR 2016).
    Dropout is never applied to the output layer. A hidden layer followed by BatchNorm (`norm_position`
    "before") has no bias: BatchNorm subtracts it again and its `beta` takes its place, so its true
    gradient is zero and Adam would turn the rounding noise of that gradient into full-size steps.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        widths: list[int],
        seeds: list[int],
        activation: str = "relu",
        slope: float = 0.01,
        dropout: list[list[float]] | None = None,
        norm: str = "none",
        norm_position: str = "before",
        bn_momentum: float = 0.1,
        norm_eps: float = 1e-5,
        residual: bool = False,
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        members = len(seeds)
        self.members, self.random = members, MemberRandom(seeds)
        self.norm_position, self.residual, self.has_norm = norm_position, residual, norm != "none"
        dropout = dropout or [[0.0] * members for _ in range(len(widths) + 1)]
        norm_cls = lookup(NORMS, norm, "norm")
        sizes = [n_in, *widths]
        self.input_dropout = Dropout(dropout[0], random=self.random, stream=0)
        bias = not (norm == "batch" and norm_position == "before")  # BatchNorm's beta replaces the bias
        self.hidden = nn.ModuleList(Linear(members, a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(
            norm_cls(members, w, momentum=bn_momentum, eps=norm_eps) if norm_cls else nn.Identity() for w in widths
        )
        self.activation = make_activation(activation, slope=slope)
        self.dropouts = nn.ModuleList(
            Dropout(p, random=self.random, stream=i + 1) for i, p in enumerate(dropout[1:])
        )
        self.output = Linear(members, sizes[-1], n_out)
        for layer, linear in enumerate([*self.hidden, self.output]):
            init_weight_(
                linear.weight, init, seeds=self.random.seeds, layer=layer,
                fan_in=linear.in_features, fan_out=linear.out_features,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Modules that do nothing (no norm, dropout off or in eval mode) are skipped: calls cost
        # microseconds, and small models take thousands of steps.
        stochastic = self.training
        h = self.input_dropout(x) if stochastic and self.input_dropout.active else x
        for linear, norm, drop in zip(self.hidden, self.norms, self.dropouts):
            z = linear(h)
            if self.has_norm and self.norm_position == "before":
                z = norm(z)
            z = self.activation(z)
            if self.has_norm and self.norm_position == "after":
                z = norm(z)
            if stochastic and drop.active:
                z = drop(z)
            h = h + z if self.residual and h.shape[-1] == z.shape[-1] else z
        return self.output(h)

    def param_roles(self) -> list[ParamRole]:
        roles = []
        linears = [*self.hidden, self.output]
        for layer, linear in enumerate(linears):
            prefix = f"hidden.{layer}" if layer < len(self.hidden) else "output"
            roles.append(ParamRole(f"{prefix}.weight", linear.weight, "weight", layer))
            if linear.bias is not None:
                roles.append(ParamRole(f"{prefix}.bias", linear.bias, "bias", layer))
        for layer, norm in enumerate(self.norms):
            for pname, param in norm.named_parameters():
                roles.append(ParamRole(f"norms.{layer}.{pname}", param, "norm", layer))
        return roles


class Wrapped(Population):
    """A user's own module as a population of one: outputs gain the member axis [1, B, ...]."""

    def __init__(self, module: nn.Module, *, seed: int = 0) -> None:
        super().__init__()
        self.module, self.members, self.random = module, 1, MemberRandom([seed])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x if x.dim() == 2 else x[0]).unsqueeze(0)

    def param_roles(self) -> list[ParamRole]:
        roles, layer = [], 0
        for name, param in self.module.named_parameters():
            if not param.requires_grad:
                continue
            if param.dim() >= 2:  # PyTorch layout [out, in, ...]: a unit's inputs are axes 2.. of [1, out, in, ...]
                role, layer = "weight", layer + 1
                fan_in = tuple(range(2, param.dim() + 1))
            else:
                role, fan_in = ("bias" if name.endswith("bias") else "norm"), (1,)
            roles.append(ParamRole(name, param, role, max(layer - 1, 0), stacked=False, fan_in_dims=fan_in))
        return roles


def resolve_dropout(cfg: ModelConfig, members: int) -> list[list[float]]:
    """The recipe's dropout as [input, hidden_1, ..., hidden_L], each a list of M drop probabilities
    (for convolutional kinds the hidden sites are their blocks, see `dropout_layers`)."""
    layers = dropout_layers(cfg)
    raw = cfg.dropout
    entries = raw if isinstance(raw, list) else [0.0] + [raw] * (layers - 1)
    if len(entries) != layers:
        raise RecipeError(
            f"model.dropout: expected one number or a list of {layers} (input and {layers - 1} hidden layers or blocks), "
            f"got a list of {len(entries)}"
        )
    out = []
    for i, entry in enumerate(entries):
        values = entry if isinstance(entry, list) else [entry] * members
        if len(values) == 1:
            values = values * members
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise RecipeError(f"model.dropout[{i}]: expected a drop probability in [0, 1), got {v!r}")
        if len(values) != members:
            raise RecipeError(f"model.dropout[{i}]: expected 1 or {members} values (one per member), got {len(values)}")
        out.append([float(v) for v in values])
    return out


def build_mlp(cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int]) -> MLP:
    if not cfg.widths or any(w < 1 for w in cfg.widths):
        raise RecipeError(f"model.widths: expected a non-empty list of positive integers, got {cfg.widths}")
    return MLP(
        n_in,
        n_out,
        widths=cfg.widths,
        seeds=seeds,
        activation=cfg.activation,
        slope=cfg.leaky_slope,
        dropout=resolve_dropout(cfg, len(seeds)),
        norm=cfg.norm,
        norm_position=cfg.norm_position,
        bn_momentum=cfg.bn_momentum,
        norm_eps=cfg.norm_eps,
        residual=cfg.residual,
        init=cfg.init,
    )


from .convnets import build_cnn, build_resnet, cnn_dropout_layers, resnet_dropout_layers  # noqa: E402  (builds on the classes above)

MODELS = {"mlp": build_mlp, "cnn": build_cnn, "resnet": build_resnet}
"""Model kind -> builder(ModelConfig, n_in=, n_out=, seeds=)."""

DROPOUT_LAYERS = {"mlp": lambda cfg: len(cfg.widths) + 1, "cnn": cnn_dropout_layers, "resnet": resnet_dropout_layers}
"""Model kind -> number of dropout sites of the recipe's model: the input first, then its hidden layers or blocks."""


def dropout_layers(cfg: ModelConfig) -> int:
    """How many entries a list `model.dropout` must have for this model: [input, hidden_1, ..., hidden_L]."""
    return lookup(DROPOUT_LAYERS, cfg.kind, "model kind")(cfg)


def build_model(
    cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int], input_shape: tuple[int, ...] | None = None
) -> Population:
    """The population the recipe describes, member m initialized from seeds[m].

    `input_shape` is the data's own shape of a row ([C, L] or [C, H, W], e.g. (1, 8, 8) for digits);
    convolutional kinds use it when the recipe gives no `model.input_shape`.
    """
    if cfg.input_shape is None and input_shape is not None:
        cfg = dataclasses.replace(cfg, input_shape=[int(s) for s in input_shape])
    return lookup(MODELS, cfg.kind, "model kind")(cfg, n_in=n_in, n_out=n_out, seeds=seeds)


def count_parameters(model: Population) -> int:
    """Trainable parameters of ONE member."""
    total = sum(r.param.numel() for r in model.param_roles())
    return total // model.members
