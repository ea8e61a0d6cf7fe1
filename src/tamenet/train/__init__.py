"""The training loop and its parts: optimizers, schedules, losses, per-member hyper-parameters."""

from .hyper import HYPER_FIELDS, member_hyper, member_seeds
from .loop import EpochRecord, LoopState, Trainer, batch_orders
from .losses import TASK_METRIC, evaluate, member_loss
from .optim import OPTIMIZERS, make_optimizer
from .schedule import lr_factor

__all__ = [
    "HYPER_FIELDS",
    "OPTIMIZERS",
    "TASK_METRIC",
    "EpochRecord",
    "LoopState",
    "Trainer",
    "batch_orders",
    "evaluate",
    "lr_factor",
    "make_optimizer",
    "member_hyper",
    "member_loss",
    "member_seeds",
]
