"""Building a population from a recipe: the registry of model kinds."""

from __future__ import annotations

import dataclasses

from ..compress.pruning import attach_prune_masks
from ..compress.qat import attach_weight_quantizers
from ..config import ModelConfig, PruneConfig, QuantizeConfig
from ..registry import lookup
from .base import Population
from .convnets import build_cnn, build_resnet
from .fcn import build_fcn
from .mlp import build_linear, build_mlp

MODELS = {"mlp": build_mlp, "linear": build_linear, "cnn": build_cnn, "resnet": build_resnet, "fcn": build_fcn}
"""Model kind -> builder(ModelConfig, n_in=, n_out=, seeds=)."""


def build_model(
    cfg: ModelConfig, *, n_in: int, n_out: int, seeds: list[int], input_shape: tuple[int, ...] | None = None,
    prune: PruneConfig | None = None, quantize: QuantizeConfig | None = None,
) -> Population:
    """The population the recipe describes, member m initialized from seeds[m].

    `input_shape` is the data's own shape of a row ([C, L] or [C, H, W], e.g. (1, 8, 8) for digits);
    convolutional kinds use it when the recipe gives no `model.input_shape`. `prune` (the recipe's
    `prune:` section) gives the population its pruning masks when it prunes; `quantize` (the `quantize:` section)
    its weight quantizers, one bit width per member.
    """
    if cfg.input_shape is None and input_shape is not None:
        cfg = dataclasses.replace(cfg, input_shape=[int(s) for s in input_shape])
    model = lookup(MODELS, cfg.kind, "model kind")(cfg, n_in=n_in, n_out=n_out, seeds=seeds)
    ks = cfg.input_features if isinstance(cfg.input_features, list) else [cfg.input_features]
    if any(k != 0 for k in ks):
        model.add_input_mask(n_in)
    model.image_shape = tuple(cfg.input_shape) if cfg.input_shape is not None else None  # augmentation's view of a row
    if quantize is not None and quantize.active:
        from ..train.hyper import member_values  # the training package imports the models: not at module level

        attach_weight_quantizers(model, quantize, [int(b) for b in member_values(quantize.bits, len(seeds), "quantize.bits")])
    return attach_prune_masks(model, prune)


def count_parameters(model: Population) -> int:
    """Trainable parameters of ONE member."""
    total = sum(r.param.numel() for r in model.param_roles())
    return total // model.members
