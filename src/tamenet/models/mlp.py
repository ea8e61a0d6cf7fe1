"""Dense populations: the MLP (A1, D1-D4, F1-F4) and the linear model (no hidden layer).

A population holds M members that differ only in numbers (seeds, dropout rates, ...); its outputs
are [M, B, K].
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import ModelConfig, RecipeError
from ..nn import (
    NORMS,
    DropConnect,
    Dropout,
    GaussianNoise,
    Linear,
    MemberRandom,
    MinMaxWeight,
    SpectralNorm,
    WeightStandardization,
    init_weight_,
    make_activation,
    mix_seed,
)
from ..nn.layers import tile
from ..registry import lookup
from .base import ParamRole, Population
from .options import member_numbers, common_model_args

HIDDEN_NOISE_STREAM = 2_000
"""Random streams (+ layer index) of noise on hidden units, DropConnect masks and weight noise;
dropout layers use streams 0..L and the loop's input noise 1_000."""
DROPCONNECT_STREAM = 3_000
WEIGHT_NOISE_STREAM = 4_000


def _standardize(members: int, n_in: int, n_out: int, seeds: list[int], layer: int) -> nn.Module:
    return WeightStandardization(gain=(2.0 / n_in) ** 0.5)


def _minmax(members: int, n_in: int, n_out: int, seeds: list[int], layer: int) -> nn.Module:
    return MinMaxWeight(members, n_out, bound=(6.0 / n_in) ** 0.5)


def _spectral(members: int, n_in: int, n_out: int, seeds: list[int], layer: int) -> nn.Module:
    return SpectralNorm(members, n_out, seeds=[mix_seed(s, layer, 7919) for s in seeds])


WEIGHT_NORMS = {"none": None, "standardize": _standardize, "minmax": _minmax, "spectral": _spectral}
"""`model.weight_norm` -> factory(members, in, out, seeds, layer) of a reparametrization of a hidden
layer's weight W [M, in, out] (F3): weight standardization scaled by sqrt(2 / fan_in), the lecture's
min-max form with learned gamma and beta per unit (starting at He-uniform's range), spectral
normalization by one power-iteration step per training batch (member m's vector seeded by its seed)."""


class MLP(Population):
    """Dense network: [dropout] -> (Linear -> norm/activation -> [noise] -> dropout [+ skip]) x L -> Linear.

    With `residual`, a hidden layer whose input and output widths agree adds its input (He et al., CVPR 2016):
    `h <- h + residual_scale * z`; a scale below 1 keeps a deep stack without normalization from blowing up.
    Dropout is never applied to the output layer. A hidden layer followed by BatchNorm (`norm_position`
    "before") has no bias: BatchNorm subtracts it again and its `beta` takes its place, so its true
    gradient is zero and Adam would turn the rounding noise of that gradient into full-size steps.

    Per member (lists of M numbers): `dropout` (drop probabilities, `dropout_mode` inverted or classic),
    `dropconnect` (drop probability of single weights of the hidden layers), `hidden_noise` (std of
    Gaussian noise on hidden units after the activation), `weight_noise` (std of Gaussian noise on
    every dense weight, output layer included); all act in training only. `weight_norm` reparametrizes
    the hidden layers' weights (`WEIGHT_NORMS`); the output layer keeps its plain weight.
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
        dropout_mode: str = "inverted",
        dropconnect: list[float] | None = None,
        hidden_noise: list[float] | None = None,
        weight_noise: list[float] | None = None,
        weight_norm: str = "none",
        norm: str = "none",
        norm_position: str = "before",
        bn_momentum: float = 0.1,
        norm_eps: float = 1e-5,
        residual: bool = False,
        residual_scale: float = 1.0,
        init: str = "he_normal",
    ) -> None:
        super().__init__()
        members = len(seeds)
        self.members, self.random = members, MemberRandom(seeds)
        self.norm_position, self.residual, self.has_norm = norm_position, residual, norm != "none"
        self.residual_scale = residual_scale
        dropout = dropout or [[0.0] * members for _ in range(len(widths) + 1)]
        norm_cls = lookup(NORMS, norm, "norm")
        weight_norm_factory = lookup(WEIGHT_NORMS, weight_norm, "weight norm")
        sizes = [n_in, *widths]
        self.input_dropout = Dropout(dropout[0], random=self.random, stream=0, mode=dropout_mode)
        bias = not (norm == "batch" and norm_position == "before")  # BatchNorm's beta replaces the bias
        self.hidden = nn.ModuleList(Linear(members, a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(
            norm_cls(members, w, momentum=bn_momentum, eps=norm_eps) if norm_cls else nn.Identity() for w in widths
        )
        self.activation = make_activation(activation, slope=slope)
        self.dropouts = nn.ModuleList(
            Dropout(p, random=self.random, stream=i + 1, mode=dropout_mode) for i, p in enumerate(dropout[1:])
        )
        self.output = Linear(members, sizes[-1], n_out)
        self.noises = None
        if hidden_noise is not None and any(v > 0 for v in hidden_noise):
            self.noises = nn.ModuleList(
                GaussianNoise(hidden_noise, random=self.random, stream=HIDDEN_NOISE_STREAM + i) for i in range(len(widths))
            )
        use_dropconnect = dropconnect is not None and any(v > 0 for v in dropconnect)
        use_weight_noise = weight_noise is not None and any(v > 0 for v in weight_noise)
        for layer, linear in enumerate([*self.hidden, self.output]):
            hidden = layer < len(self.hidden)
            linear.set_weight_transforms(
                noise=GaussianNoise(weight_noise, random=self.random, stream=WEIGHT_NOISE_STREAM + layer, per_row=False)
                if use_weight_noise else None,
                norm=weight_norm_factory(members, linear.in_features, linear.out_features, self.random.seeds, layer)
                if hidden and weight_norm_factory else None,
                dropconnect=DropConnect(dropconnect, random=self.random, stream=DROPCONNECT_STREAM + layer)
                if hidden and use_dropconnect else None,
            )
        for layer, linear in enumerate([*self.hidden, self.output]):
            init_weight_(
                linear.weight, init, seeds=self.random.seeds, layer=layer,
                fan_in=linear.in_features, fan_out=linear.out_features,
            )

    # One hidden layer is written once, in two halves around its dropout: the plain forward runs them
    # back to back, Monte-Carlo dropout's `mc_forward` samples the dropout in between. Modules that do
    # nothing (no norm, dropout off or in eval mode) are skipped: small models take thousands of steps.
    def _pre_dropout(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Hidden layer i up to its dropout: linear, norm and activation, noise on the units."""
        z = self.hidden[i](h)
        if self.has_norm and self.norm_position == "before":
            z = self.norms[i](z)
        z = self.activation(z)
        if self.has_norm and self.norm_position == "after":
            z = self.norms[i](z)
        if self.noises is not None and self.training:
            z = self.noises[i](z)
        return z

    def _post_dropout(self, i: int, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Hidden layer i from its dropout on: the dropout, then the residual sum."""
        drop = self.dropouts[i]
        if drop.acts:
            z = drop(z)
        return torch.add(h, z, alpha=self.residual_scale) if self.residual and h.shape[-1] == z.shape[-1] else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.select_inputs(x)
        h = self.input_dropout(x) if self.input_dropout.acts else x
        for i in range(len(self.hidden)):
            h = self._post_dropout(i, h, self._pre_dropout(i, h))
        return self.output(h)

    def mc_forward(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """Monte-Carlo dropout's pass (`tamenet.mc_dropout`, dropout layers sampling): outputs [M, T*N, K]
        equal to `self(x tiled T times along the batch)`, copy t in rows t*N .. (t+1)*N - 1, but the
        layers before the first active dropout run once on x, and that dropout masks the T copies
        by broadcasting, without a tiled copy of its input."""
        first = None if self.input_dropout.active else next((i for i, d in enumerate(self.dropouts) if d.active), None)
        if first is None:
            return self(tile(x, samples, x.dim() - 2))
        h = self.select_inputs(x)
        for i in range(first):
            h = self._post_dropout(i, h, self._pre_dropout(i, h))
        z = self.dropouts[first].sample_tiled(self._pre_dropout(first, h), samples)
        if self.residual and h.shape[-1] == z.shape[-1]:
            h = torch.add(tile(h, samples, h.dim() - 2), z, alpha=self.residual_scale)
        else:
            h = z
        for i in range(first + 1, len(self.hidden)):
            h = self._post_dropout(i, h, self._pre_dropout(i, h))
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
        for layer, linear in enumerate(self.hidden):  # learned gains of a weight norm (min-max's gamma and beta)
            if linear.weight_norm is not None:
                for pname, param in linear.weight_norm.named_parameters():
                    roles.append(ParamRole(f"hidden.{layer}.weight_norm.{pname}", param, "norm", layer))
        return roles


def build_mlp(cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int]) -> MLP:
    """The recipe's MLP; `model.widths: []` is the linear model (see `build_linear`)."""
    if any(w < 1 for w in cfg.widths):
        raise RecipeError(f"model.widths: expected a list of positive integers (or [] for a linear model), got {cfg.widths}")
    return MLP(
        n_in,
        n_out,
        widths=cfg.widths,
        **common_model_args(cfg, seeds),
        dropconnect=member_numbers(cfg.dropconnect, len(seeds), "model.dropconnect", below_one=True),
        hidden_noise=member_numbers(cfg.hidden_noise, len(seeds), "model.hidden_noise"),
        weight_noise=member_numbers(cfg.weight_noise, len(seeds), "model.weight_noise"),
        weight_norm=cfg.weight_norm,
        norm_position=cfg.norm_position,
        residual=cfg.residual,
        residual_scale=cfg.residual_scale,
    )


def build_linear(cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int]) -> MLP:
    """`model.kind: linear`: `y = x W + b`, one dense layer from the inputs to the outputs (logistic or
    softmax regression for classes, least squares for values; with `penalty.l2` ridge, with `penalty.l1`
    the lasso). `model.widths` and the hidden-layer options do not apply; input dropout, weight noise
    and input selection do."""
    return build_mlp(dataclasses.replace(cfg, widths=[]), n_in=n_in, n_out=n_out, seeds=seeds)
