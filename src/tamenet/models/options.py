"""The recipe's model options as constructor arguments, shared by every model kind.

Each kind declares its dropout sites here (the input first, then its hidden layers or blocks), so
`resolve_dropout` can check a list `model.dropout` without importing the networks.
"""

from __future__ import annotations

from ..config import ModelConfig, RecipeError
from ..registry import lookup


def cnn_dropout_layers(cfg: ModelConfig) -> int:
    """Dropout sites of a cnn: the input, each conv block, each hidden dense layer of the head."""
    return 1 + len(cfg.channels) + len(cfg.head_widths)


def resnet_dropout_layers(cfg: ModelConfig) -> int:
    """Dropout sites of a resnet: the input, and inside each basic block."""
    return 1 + cfg.blocks * len(cfg.channels)


DROPOUT_LAYERS = {
    "mlp": lambda cfg: len(cfg.widths) + 1,
    "linear": lambda cfg: 1,
    "cnn": cnn_dropout_layers,
    "resnet": resnet_dropout_layers,
    "fcn": lambda cfg: 1 + len(cfg.channels),
}
"""Model kind -> number of dropout sites of the recipe's model: the input first, then its hidden layers or blocks."""


def dropout_layers(cfg: ModelConfig) -> int:
    """How many entries a list `model.dropout` must have for this model: [input, hidden_1, ..., hidden_L]."""
    return lookup(DROPOUT_LAYERS, cfg.kind, "model kind")(cfg)


def resolve_dropout(cfg: ModelConfig, members: int) -> list[list[float]]:
    """The recipe's dropout as [input, hidden_1, ..., hidden_L], each a list of M drop probabilities
    (for convolutional kinds the hidden sites are their blocks, see `dropout_layers`)."""
    layers = dropout_layers(cfg)
    raw = cfg.dropout
    entries = raw if isinstance(raw, list) else [0.0] + [raw] * (layers - 1)
    if len(entries) != layers:
        example = ", ".join(["0.2", *["0.5"] * (layers - 1)])
        raise RecipeError(
            f"model.dropout: expected one number or a list of {layers} (input and {layers - 1} hidden layers or blocks), "
            f"got a list of {len(entries)}; set it to match the model, e.g. --set 'model.dropout=[{example}]', "
            "or one number for every hidden layer, e.g. --set model.dropout=0.5"
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


def member_numbers(value, members: int, where: str, *, below_one: bool = False) -> list[float]:
    """A per-member recipe number broadcast to M floats; `below_one` for drop probabilities (p < 1)."""
    values = value if isinstance(value, list) else [value]
    if len(values) == 1:
        values = values * members
    if len(values) != members:
        raise RecipeError(f"{where}: expected 1 or {members} values (one per member), got {len(values)}")
    for v in values:
        if below_one and not v < 1.0:
            raise RecipeError(f"{where}: expected a drop probability in [0, 1), got {v!r}")
    return [float(v) for v in values]


def common_model_args(cfg: ModelConfig, seeds: list[int]) -> dict:
    """The constructor arguments every model kind (mlp, cnn, resnet) takes from the recipe alike."""
    return dict(
        seeds=seeds,
        activation=cfg.activation,
        slope=cfg.leaky_slope,
        dropout=resolve_dropout(cfg, len(seeds)),
        dropout_mode=cfg.dropout_mode,
        norm=cfg.norm,
        bn_momentum=cfg.bn_momentum,
        norm_eps=cfg.norm_eps,
        init=cfg.init,
    )
