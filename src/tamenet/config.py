"""Typed, frozen recipe objects, parsed from plain dicts (YAML) with errors that name the key.

A recipe has seven sections (``data``, ``model``, ``penalty``, ``constraints``, ``train``, ``augment``, ``track``) and a ``seed``.
Every numeric hyper-parameter marked *per member* accepts a number or a list of numbers, one per
member of the population; lists of length M make a population of M models trained as one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

PerMember = Union[float, list]  # a number, or one number per member
"""Marks a numeric hyper-parameter that may differ between members: ``0.1`` or ``[0.0, 0.1, 1.0]``."""


def _choices(*names: str) -> dict[str, Any]:
    return {"choices": names}


def _range(low: float | None = None, high: float | None = None, *, open_low: bool = False) -> dict[str, Any]:
    return {"range": (low, high, open_low)}


def _member(low: float | None = None, high: float | None = None, *, open_low: bool = False, hyper: str | None = None,
            integer: bool = False) -> dict[str, Any]:
    """Metadata of a per-member number (a `PerMember` field): its range, its name among the loop's hyper-parameter
    tensors (default: the field's name) and whether it is a whole number. Declaring a field this way is all it takes
    for it to become a tensor [M] in the loop (`member_fields`), a member axis of `tamenet search` and an Optuna
    dimension."""
    return {**_range(low, high, open_low=open_low), "member": {"hyper": hyper, "integer": integer}}


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split (B1) and scaled (A6)."""

    name: str = "digits"  # a built-in data set, or "csv" / "npz" with `path`
    path: str | None = None
    target: str | None = None  # CSV: the target column
    # csv / npz: the column (array) marking every row train, val or test; it replaces the shares val and test
    split: str | None = None
    task: str = field(default="auto", metadata=_choices("auto", "classification", "regression"))
    val: float = field(default=0.3, metadata=_range(0.0, 1.0))  # share of the non-test rows; 0: no validation
    test: float = field(default=0.2, metadata=_range(0.0, 1.0))  # share of all rows; 0: no test split
    stratify: bool = True
    standardize: bool = True
    seed: int = 0  # the split's seed, apart from the models' seeds
    n_samples: int | None = field(default=None, metadata=_range(10, None))  # moons, spirals, mnist1d
    noise: float | None = field(default=None, metadata=_range(0.0, None))  # moons, spirals
    # rows of one group (a speaker, a source) stay on one side of every split: csv/text a column; audio a
    # file-name field such as "speaker" or "folder"; sentiment "source" (the file)
    groups: str | None = None
    text: str | None = None  # text: the column of strings
    label: str | None = field(default=None, metadata=_choices("name", "folder"))  # audio: label from
    pattern: str | None = None  # audio: file-name pattern, default "{label}_{speaker}_{index}"
    rate: int | None = field(default=None, metadata=_range(1, None))  # audio: resample to this rate (Hz)
    seconds: float | None = field(default=None, metadata=_range(0.0, None, open_low=True))  # audio: clip length


@dataclass(frozen=True)
class ModelConfig:
    """A network built by `tamenet.models` (A1, A5, C6, D1, D3, D4, F1-F4)."""

    kind: str = "mlp"
    # C6: each member sees only its k best inputs, ranked on its own training rows (F-test); 0: all
    input_features: PerMember = field(default=0, metadata=_member(0, None, integer=True))
    widths: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"
    leaky_slope: float = field(default=0.01, metadata=_range(0.0, None))
    # Dropout: p is the probability of DROPPING a unit. A number applies to every hidden layer;
    # a list gives [input, hidden_1, ..., hidden_L]. Each entry is per member.
    dropout: Any = 0.0
    dropout_mode: str = field(default="inverted", metadata=_choices("inverted", "classic"))
    dropconnect: PerMember = field(default=0.0, metadata=_member(0.0, 1.0))  # drop probability of single weights
    hidden_noise: PerMember = field(default=0.0, metadata=_member(0.0, None))  # std of noise on hidden units
    weight_noise: PerMember = field(default=0.0, metadata=_member(0.0, None))  # std of noise on the weights
    weight_norm: str = field(default="none", metadata=_choices("none", "standardize", "minmax", "spectral"))
    norm: str = "none"
    norm_position: str = field(default="before", metadata=_choices("before", "after"))
    bn_momentum: float = field(default=0.1, metadata=_range(0.0, 1.0, open_low=True))
    norm_eps: float = field(default=1e-5, metadata=_range(0.0, None, open_low=True))
    init: str = "he_normal"
    residual: bool = False
    residual_scale: float = field(default=1.0, metadata=_range(0.0, None, open_low=True))
    # Convolutional kinds (cnn, resnet): rows are reshaped to input_shape, [C, L] or [C, H, W]
    # (default: the data set's own image or signal shape, else [1, F]).
    input_shape: list[int] | None = None
    channels: list[int] = field(default_factory=lambda: [32, 64])  # per conv block (cnn) or stage (resnet)
    kernel_size: int | list[int] = field(default=3, metadata=_range(1, None))  # cnn: a list gives one per block
    stride: int | list[int] = field(default=1, metadata=_range(1, None))  # cnn: per block as kernel_size
    pool: str = field(default="max", metadata=_choices("none", "max", "avg"))  # cnn: 2x pooling after blocks
    pool_every: int = field(default=1, metadata=_range(1, None))
    readout: str = field(default="gap", metadata=_choices("gap", "flatten"))  # cnn: before the dense head
    head_widths: list[int] = field(default_factory=list)  # cnn: hidden dense layers after the readout
    blocks: int = field(default=1, metadata=_range(1, None))  # resnet: basic blocks per stage


@dataclass(frozen=True)
class SharingGroup:
    """One group G_k of the soft weight-sharing penalty (C4): whole tensors, or units of one layer.

    `layers`: w_i is the whole weight tensor of each named layer (equal shapes). `layer` with `units`:
    w_i is the incoming weight vector of each listed unit (output index) of that layer.
    """

    layers: list[str] | None = None
    layer: str | None = None
    units: list[int] | None = None


@dataclass(frozen=True)
class PenaltyConfig:
    """Weight penalties (C1-C4). L2 is `l2/2 * ||w||^2` (gradient `l2 * w`) unless `l2_form: full`."""

    l2: PerMember = field(default=0.0, metadata=_member(0.0, None))
    l2_form: str = field(default="half", metadata=_choices("half", "full"))
    l1: PerMember = field(default=0.0, metadata=_member(0.0, None))
    l1_mode: str = field(default="proximal", metadata=_choices("proximal", "subgradient"))
    penalize_bias: bool = False
    penalize_norm: bool = False
    layer_scale: list[float] | None = None  # one multiplier per weight layer, input first
    soft_sharing: PerMember = field(default=0.0, metadata=_member(0.0, None))  # lambda of C4
    l2_sp: PerMember = field(default=0.0, metadata=_member(0.0, None))  # alpha of L2-SP: copied weights to the source's
    l2_sp_head: PerMember = field(default=0.0, metadata=_member(0.0, None))  # beta of L2-SP: the new head to 0
    bn_l1: PerMember = field(default=0.0, metadata=_member(0.0, None))  # network slimming: lambda sum |gamma| of BatchNorms
    sharing_groups: list[SharingGroup] = field(default_factory=list)


@dataclass(frozen=True)
class MaskConfig:
    """A sparse connectivity mask on one weight layer (C5): `band` neighbours on each side, or a 0/1 `.npy` file."""

    layer: str = ""
    band: int | None = field(default=None, metadata=_range(0, None))
    file: str | None = None


@dataclass(frozen=True)
class TieConfig:
    """Layers that share one value (C5); with `transpose`, each later layer is the first one's transpose."""

    layers: list[str] = field(default_factory=list)
    transpose: bool = False


@dataclass(frozen=True)
class ConstraintsConfig:
    """Hard constraints, projections applied after every optimizer step (C5). Layer names as in `param_roles()`."""

    max_norm: PerMember = field(default=0.0, metadata=_member(0.0, None))  # 0: off
    max_norm_layers: list[str] | None = None  # None: every weight layer
    non_negative: Any = False  # true: every weight layer; or a list of layer names
    masks: list[MaskConfig] = field(default_factory=list)
    tied: list[TieConfig] = field(default_factory=list)


@dataclass(frozen=True)
class ClipConfig:
    """Gradient clipping per member (G1): by global norm, by value, or adaptive unit-wise."""

    by: str = field(default="none", metadata=_choices("none", "norm", "value", "adaptive"))
    max: PerMember = field(default=1.0, metadata=_member(0.0, None, open_low=True, hyper="clip"))
    eps: float = field(default=1e-3, metadata=_range(0.0, None, open_low=True))


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule: a multiplier of the base rate, a function of the (fractional) epoch."""

    kind: str = field(default="constant", metadata=_choices("constant", "step", "cosine"))
    warmup_epochs: float = field(default=0.0, metadata=_range(0.0, None))
    step_size: int = field(default=30, metadata=_range(1, None))
    gamma: float = field(default=0.1, metadata=_range(0.0, 1.0, open_low=True))
    min_factor: float = field(default=0.0, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop a member when `monitor` has not improved by `min_delta` for `patience` epochs (G2)."""

    monitor: str = field(default="val_loss", metadata=_choices("val_loss", "val_accuracy", "val_rmse"))
    patience: int | None = field(default=None, metadata=_range(1, None))  # None: never stop early
    min_delta: float = field(default=0.0, metadata=_range(0.0, None))
    restore_best: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """The optimizer (A3), its schedule, clipping (G1), early stopping (G2) and input noise (D4)."""

    optimizer: str = "adam"
    lr: PerMember = field(default=1e-3, metadata=_member(0.0, None, open_low=True))
    momentum: PerMember = field(default=0.0, metadata=_member(0.0, 1.0))
    nesterov: bool = False
    beta1: PerMember = field(default=0.9, metadata=_member(0.0, 1.0))
    beta2: PerMember = field(default=0.999, metadata=_member(0.0, 1.0))
    rho: PerMember = field(default=0.9, metadata=_member(0.0, 1.0))  # RMSProp's decay
    eps: float = field(default=1e-8, metadata=_range(0.0, None, open_low=True))
    weight_decay: PerMember = field(default=0.0, metadata=_member(0.0, None))  # decoupled
    batch_size: Any = 64  # an integer, or "full" for full-batch gradient descent
    epochs: int = field(default=100, metadata=_range(1, None))
    input_noise: PerMember = field(default=0.0, metadata=_member(0.0, None))  # std of Gaussian noise
    # where the population trains: "auto" is the GPU when PyTorch sees one, else the CPU
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    # I1: the training step's arithmetic (docs/precision.md); bf16/fp16 run the forward pass under autocast, fp16
    # with a per-member gradient scaler; force_precision trains at a precision refused on the CPU anyway
    precision: str = field(default="fp32", metadata=_choices("fp32", "tf32", "bf16", "fp16"))
    force_precision: bool = False
    # transfer (H4): start from another run's layers, freeze the first `freeze` weight layers, and train the
    # copied layers at `copied_lr` times the learning rate (soft transfer)
    init_from: str | None = None
    freeze: int = field(default=0, metadata=_range(0, None))
    copied_lr: PerMember = field(default=1.0, metadata=_member(0.0, None))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass(frozen=True)
class PruneConfig:
    """Unstructured pruning during training (H1): each member's masks at its own `sparsity` (a share in [0, 1)).

    `start_epoch` 0 prunes the initialization; later, the weights trained so far. With `end_epoch`, the
    sparsity rises along Zhu & Gupta's cubic schedule from 0 at `start_epoch` to the target at `end_epoch`
    (one new mask per epoch); without it, the whole target at once. Pruned weights stay exactly zero.
    """

    sparsity: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="prune_sparsity"))
    method: str = field(default="magnitude", metadata=_choices("magnitude", "random"))
    scope: str = field(default="layer", metadata=_choices("layer", "global"))  # global: one ranking per member
    start_epoch: int = field(default=0, metadata=_range(0, None))
    end_epoch: int | None = field(default=None, metadata=_range(1, None))
    layers: list[str] | None = None  # weight layers by name (`param_roles()`); None: every weight layer

    def __post_init__(self) -> None:
        values = self.sparsity if isinstance(self.sparsity, list) else [self.sparsity]
        if any(isinstance(v, (int, float)) and v >= 1.0 for v in values):
            raise RecipeError(f"prune.sparsity: expected a share in [0, 1) (1 would remove every weight), got {self.sparsity!r}")
        if self.end_epoch is not None and self.end_epoch <= self.start_epoch:
            raise RecipeError(f"prune.end_epoch: expected an epoch after start_epoch ({self.start_epoch}), got {self.end_epoch}")

    @property
    def active(self) -> bool:
        values = self.sparsity if isinstance(self.sparsity, list) else [self.sparsity]
        return any(v > 0 for v in values)


@dataclass(frozen=True)
class QuantizeConfig:
    """Quantization-aware training of the weights (H2): each member's weights fake-quantized to its own `bits`.

    The forward pass uses r_hat = S (Q - Z) of every weight layer (symmetric: Z = 0; asymmetric: the range
    [min, max] onto [0, 2^b - 1]), per tensor or per output channel; the backward pass the straight-through
    estimator. `bits` 0 keeps a member in float (a baseline inside the same population).
    `activations: true` also fake-quantizes the input of every quantized layer at the same bits, per tensor and
    per member, on a range that an observer (`observer`: minmax, or moving_average) learns from training batches
    only (`compress.activations`); `tamenet quantize` does the same after training (`compress.ptq`).
    """

    bits: PerMember = field(default=0, metadata=_member(0, 16, hyper="quant_bits", integer=True))
    symmetric: bool = True
    per_channel: bool = False
    activations: bool = False
    observer: str = field(default="minmax", metadata=_choices("minmax", "moving_average"))
    layers: list[str] | None = None  # weight layers by name (`param_roles()`); None: every weight layer

    def __post_init__(self) -> None:
        values = self.bits if isinstance(self.bits, list) else [self.bits]
        if any(isinstance(v, float) and v != int(v) for v in values):
            raise RecipeError(f"quantize.bits: expected whole bit widths, got {self.bits!r}")
        if any(isinstance(v, (int, float)) and v == 1 for v in values):
            raise RecipeError(f"quantize.bits: expected 0 (off) or a bit width in [2, 16], got {self.bits!r}")

    @property
    def active(self) -> bool:
        values = self.bits if isinstance(self.bits, list) else [self.bits]
        return any(v > 0 for v in values)


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation (H3): a teacher run's logits as soft targets beside the hard labels.

    L = alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) CE(y, z_s), T and alpha per member;
    validation and early stopping use the hard labels. `teacher` is a run directory (an `--ensemble` or
    population run: its members' logits averaged) trained on the same data, never on this run's
    validation or test rows.
    """

    teacher: str | None = None
    temperature: PerMember = field(default=4.0, metadata=_member(0.0, None, open_low=True, hyper="distill_temperature"))
    alpha: PerMember = field(default=0.5, metadata=_member(0.0, 1.0, hyper="distill_alpha"))

    @property
    def active(self) -> bool:
        return self.teacher is not None


@dataclass(frozen=True)
class ImageAugmentConfig:
    """Image augmentation of training batches (E1), batched on the device, each member by its own numbers.

    Every strength is per member and 0 turns its transform off. `p` is the share of images each enabled
    transform acts on (drawn per image and transform); the flips and the channel shuffle are probabilities
    themselves. Rows are viewed as images [C, H, W] through `model.input_shape` (the data set's image shape).
    """

    p: PerMember = field(default=1.0, metadata=_member(0.0, 1.0, hyper="aug_p"))
    hflip: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="aug_hflip"))  # P(flip left-right)
    vflip: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="aug_vflip"))  # P(flip up-down)
    rotate: PerMember = field(default=0.0, metadata=_member(0.0, 180.0, hyper="aug_rotate"))  # degrees: U(-r, r)
    zoom: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="aug_zoom"))  # scale U(1-z, 1+z)
    shift: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="aug_shift"))  # share of the side: U(-s, s)
    crop: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="aug_crop"))  # a fragment of side 1-U(0,c), resized
    resolution: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="aug_resolution"))  # down to 1-r, up again
    brightness: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="aug_brightness"))  # x + U(-b, b)
    contrast: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="aug_contrast"))  # about the mean, x U(1-c, 1+c)
    hue: PerMember = field(default=0.0, metadata=_member(0.0, 0.5, hyper="aug_hue"))  # hue turn U(-h, h) of a full turn
    saturation: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="aug_saturation"))  # factor U(1-s, 1+s)
    sharpness: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="aug_sharpness"))  # factor 1 + U(0, s)
    elastic: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="aug_elastic"))  # displacement, pixels
    blur: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="aug_blur"))  # Gaussian sigma U(0, s), pixels
    noise: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="aug_noise"))  # std of added N(0, 1)
    channel_shuffle: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="aug_channel_shuffle"))
    glare: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="aug_glare"))  # a bright patch, height U(0, g)
    erase: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="aug_erase"))  # a box of area share U(0.02, e)


@dataclass(frozen=True)
class MixConfig:
    """Mixing two training images and their labels (E1): mixup or cutmix, per member alpha and share `p`."""

    kind: str = field(default="none", metadata=_choices("none", "mixup", "cutmix"))
    alpha: PerMember = field(default=0.2, metadata=_member(0.0, None, open_low=True, hyper="mix_alpha"))  # Beta(a, a)
    p: PerMember = field(default=1.0, metadata=_member(0.0, 1.0, hyper="mix_p"))  # share of images mixed


@dataclass(frozen=True)
class TextAugmentConfig:
    """Operations on the training strings, re-drawn every epoch per member (probabilities, 0: off)."""

    synonym: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_synonym"))
    word_delete: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_word_delete"))
    sentence_delete: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_sentence_delete"))
    sentence_shuffle: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_sentence_shuffle"))
    back_translate: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_back_translate"))
    synonyms: str | None = None  # a TSV file of `word<TAB>synonym<TAB>synonym...` lines; default: the built-in map


@dataclass(frozen=True)
class AudioAugmentConfig:
    """Operations on the training waveforms, per batch and member; each fires on a row with probability `p`."""

    p: PerMember = field(default=0.5, metadata=_member(0.0, 1.0, hyper="audio_p"))
    trim: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="audio_trim"))  # share of the length
    trim_mode: str = field(default="any", metadata=_choices("any", "start", "end", "middle"))
    fragment: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="audio_fragment"))  # relative change
    stretch: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="audio_stretch"))  # relative change
    pitch: PerMember = field(default=0.0, metadata=_member(0.0, 12.0, hyper="audio_pitch"))  # semitones
    warp: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="audio_warp"))  # Hz
    background: PerMember = field(default=0.0, metadata=_member(0.0, 100.0, hyper="audio_background"))  # SNR dB
    noise: PerMember = field(default=0.0, metadata=_member(0.0, 100.0, hyper="audio_noise"))  # SNR dB, 0: off
    background_path: str | None = None  # a WAV file or folder of background recordings



@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of training batches only (E1-E5); validation, test and scored rows never pass through it."""

    image: ImageAugmentConfig = field(default_factory=ImageAugmentConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    text: TextAugmentConfig = field(default_factory=TextAugmentConfig)  # on strings, before featurization (E2)
    audio: AudioAugmentConfig = field(default_factory=AudioAugmentConfig)  # on waveforms, before log-mel (E3)


@dataclass(frozen=True)
class TrackConfig:
    """What a run writes beside its metrics."""

    tensorboard: bool = True
    plots: bool = True
    checkpoint: bool = True
    mlflow: bool = False  # log to MLflow ($MLFLOW_TRACKING_URI, else <run>/mlflow.db); the 'mlflow' extra
    wandb: bool = False  # log to Weights & Biases, offline unless $WANDB_MODE says otherwise; the 'wandb' extra


@dataclass(frozen=True)
class Recipe:
    """A whole training job. `seed` is per member: a list of seeds makes an ensemble-like population."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    penalty: PenaltyConfig = field(default_factory=PenaltyConfig)
    constraints: ConstraintsConfig = field(default_factory=ConstraintsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    seed: Any = 0
    name: str | None = None


class RecipeError(ValueError):
    """A recipe key or value that cannot be used; the message names the key."""


def parse(cls: type, raw: Any, where: str = "") -> Any:
    """Build the dataclass `cls` from a plain dict, rejecting unknown keys and bad values by name."""
    if raw is None:
        raw = {}
    if dataclasses.is_dataclass(raw) and isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping of keys to values, got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RecipeError(f"unknown recipe key '{path}'{hint} (valid keys: {', '.join(fields)})")
        values[key] = _coerce(hints[key], value, path, fields[key].metadata)
    return cls(**values)


def _coerce(hint: Any, value: Any, path: str, meta: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, path)
    if hint is PerMember:
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise RecipeError(f"{path}: expected a number or a non-empty list of numbers, got []")
        out = [_check(_number(v, float, path), path, meta) for v in items]
        return out if isinstance(value, (list, tuple)) else out[0]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if isinstance(value, (list, tuple)):  # `int | list[int]`: a list takes the list form
            inner = [a for a in inner if typing.get_origin(a) is list] or inner
        return _coerce(inner[0], value, path, meta)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{path}: expected a list, got {_show(value)}")
        return [_coerce(args[0], v, f"{path}[{i}]", meta) for i, v in enumerate(value)]
    if origin is Literal:
        hint = str
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{path}: expected true or false, got {_show(value)}")
        return value
    if hint in (int, float):
        return _check(_number(value, hint, path), path, meta)
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{path}: expected a string, got {_show(value)}")
        choices = meta.get("choices") if meta else None
        if choices and value not in choices:
            raise RecipeError(f"{path}: unknown value '{value}' (valid: {', '.join(choices)})")
        return value
    raise TypeError(f"unsupported recipe type {hint!r} at {path}")


def _number(value: Any, kind: type, path: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return _number(float(value), kind, path)
            except ValueError:
                pass
        expected = "an integer" if kind is int else "a number"
        raise RecipeError(f"{path}: expected {expected}, got {_show(value)}")
    if kind is int:
        if float(value) != int(value):
            raise RecipeError(f"{path}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


def _check(value: float, path: str, meta: Any) -> float:
    bounds = meta.get("range") if meta else None
    if bounds is None:
        return value
    low, high, open_low = bounds
    if value != value:
        raise RecipeError(f"{path}: expected a number, got NaN")
    if low is not None and (value < low or (open_low and value == low)):
        sign = ">" if open_low else ">="
        raise RecipeError(f"{path}: expected a value {sign} {low}, got {value!r}")
    if high is not None and value > high:
        raise RecipeError(f"{path}: expected a value <= {high}, got {value!r}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) < 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def to_dict(obj: Any) -> Any:
    """The plain-dict form of a recipe (what `parse` reads back)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def set_key(raw: dict, dotted: str, value: Any) -> dict:
    """Return a copy of `raw` with `a.b.c = value` (the CLI's `--set`)."""
    out = dict(raw)
    head, _, rest = dotted.partition(".")
    if not head:
        raise RecipeError(f"--set: expected KEY=VALUE with a dotted key, got '{dotted}'")
    if rest:
        inner = out.get(head) or {}
        if not isinstance(inner, dict):
            raise RecipeError(f"--set {dotted}: '{head}' is not a section")
        out[head] = set_key(inner, rest, value)
    else:
        out[head] = value
    return out


def population_size(recipe: Recipe) -> int:
    """M: the common length of every per-member list in the recipe (1 when there are none)."""
    lengths = {path: len(v) for path, v in per_member_values(recipe).items() if isinstance(v, list)}
    sizes = set(lengths.values()) - {1}
    if len(sizes) > 1:
        listed = ", ".join(f"{p} has {n}" for p, n in lengths.items())
        raise RecipeError(f"per-member lists must all have the same length M; got {listed}")
    return sizes.pop() if sizes else 1


def per_member_values(recipe: Recipe) -> dict[str, Any]:
    """Every per-member hyper-parameter of the recipe by dotted path, as written (see `member_fields`)."""
    out: dict[str, Any] = {"seed": recipe.seed}
    for f in member_fields():
        value: Any = recipe
        for part in f.path.split("."):
            value = getattr(value, part)
        out[f.path] = value
    dropout = recipe.model.dropout
    if isinstance(dropout, list):
        for i, p in enumerate(dropout):
            out[f"model.dropout[{i}]"] = p
    else:
        out["model.dropout"] = dropout
    return out


@dataclass(frozen=True)
class MemberField:
    """One per-member number of the recipe: its dotted path, its hyper-parameter name in the loop, whole or not."""

    path: str
    hyper: str
    integer: bool = False


MEMBER_SECTIONS = ("model", "penalty", "constraints", "train", "augment", "prune", "quantize", "distill")
"""The recipe sections that hold per-member numbers, in the order their fields are listed."""


def member_fields() -> tuple[MemberField, ...]:
    """Every `PerMember` field of the recipe, found from the dataclasses themselves: the one source of truth for
    the loop's hyper-parameter tensors, search's member axes and Optuna's whole-number dimensions."""
    out: list[MemberField] = []

    def walk(cls: type, where: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{where}.{f.name}")
            elif hints[f.name] is PerMember:
                info = f.metadata["member"]
                out.append(MemberField(f"{where}.{f.name}", info["hyper"] or f.name, info["integer"]))

    hints = typing.get_type_hints(Recipe)
    for section in MEMBER_SECTIONS:
        walk(hints[section], section)
    return tuple(out)
