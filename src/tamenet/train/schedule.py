"""Learning-rate schedules: a multiplier of each member's base rate, a function of the fractional epoch."""

from __future__ import annotations

import math

from ..config import ScheduleConfig


def lr_factor(cfg: ScheduleConfig, epoch: float, total_epochs: int, *, step_size: float = 0.0) -> float:
    """The multiplier at fractional epoch `epoch` (the start of a step of `step_size` epochs).

    Linear warm-up to 1 over `warmup_epochs`, then constant, step decay `gamma ** floor(e / step_size)`,
    or cosine from 1 down to `min_factor` (Loshchilov & Hutter, SGDR, ICLR 2017).
    """
    warm = 1.0
    if cfg.warmup_epochs > 0:
        warm = min(1.0, (epoch + step_size) / cfg.warmup_epochs)
    if cfg.kind == "constant":
        return warm
    if cfg.kind == "step":
        return warm * cfg.gamma ** math.floor(epoch / cfg.step_size)
    span = max(total_epochs - cfg.warmup_epochs, 1e-12)
    progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
    return warm * (cfg.min_factor + (1.0 - cfg.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
