"""The training step's precision (SPEC I1, `train.precision`): what the step does around its forward pass.

    fp32   nothing: the step is the plain one (`Step.precision` is None, no context, no extra pass)
    tf32   fp32 tensors, TF32 tensor-core matmuls and convolutions on a CUDA GPU while the step runs
           (`torch.backends.cuda.matmul` / `cudnn` precision set on entry, restored on exit); on the CPU, fp32
    bf16   the forward pass and the loss under `torch.autocast(device, torch.bfloat16)`; weights, gradients
           and optimizer state stay fp32 ("master weights", Micikevicius et al., "Mixed precision training",
           ICLR 2018); bf16 has fp32's exponent range, so no loss scaling is needed
    fp16   as bf16 with torch.float16, and a loss scale per member (`MemberGradScaler`)

fp16's loss scaling follows `torch.amp.GradScaler` (the loss times S before backward; the gradients divided by S
before any gradient transform, so penalties and clipping see true gradients; a step whose gradients hold inf or
NaN is skipped and S halved; S doubled after `growth_interval` finite steps in a row), with one difference: S, the
inf check and the skip are per member. torch's scaler skips the step of every parameter when one gradient
overflows, so one member's overflow would hold all the others back; here member m's scale and skipped steps are
exactly those it would have alone. A skipped member's weights and optimizer state are put back as they were
before the step (its loss is not a divergence: the loop's divergence check reads the unscaled loss). One
difference remains: Adam's bias correction counts the population's steps, so for Adam a skipped step still
counts (torch's scaler does not call `Adam.step` then); SGD and RMSProp members equal their separate runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .loop import Trainer

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""train.precision -> the autocast dtype of the forward pass."""


@contextlib.contextmanager
def tf32_matmuls(enabled: bool = True) -> Iterator[None]:
    """CUDA matmuls and cuDNN convolutions at TF32 while the block runs; the previous settings restored after."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    new_api = hasattr(matmul, "fp32_precision") and hasattr(getattr(cudnn, "conv", None), "fp32_precision")
    if new_api:  # torch >= 2.9: fp32_precision 'tf32' | 'ieee' | 'none'
        saved = (matmul.fp32_precision, cudnn.conv.fp32_precision)
        matmul.fp32_precision = cudnn.conv.fp32_precision = "tf32" if enabled else "ieee"
    else:
        saved = (matmul.allow_tf32, cudnn.allow_tf32)
        matmul.allow_tf32 = cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        if new_api:
            matmul.fp32_precision, cudnn.conv.fp32_precision = saved
        else:
            matmul.allow_tf32, cudnn.allow_tf32 = saved


class MemberGradScaler:
    """Loss scaling per member for fp16: `torch.amp.GradScaler`'s rule applied to each member on its own.

    scale [M] starts at `init_scale`; per step and member: inf/NaN in its gradients -> skip, scale x `backoff`,
    streak 0; else streak + 1, and at `growth_interval` finite steps in a row scale x `growth`, streak 0."""

    def __init__(self, members: int, device: torch.device, *, init_scale: float = 2.0**16, growth: float = 2.0,
                 backoff: float = 0.5, growth_interval: int = 2000) -> None:
        self.scale = torch.full((members,), init_scale, dtype=torch.float32, device=device)
        self.streak = torch.zeros(members, dtype=torch.int64, device=device)
        self.growth, self.backoff, self.growth_interval = growth, backoff, growth_interval
        self.skipped = torch.zeros(members, dtype=torch.int64, device=device)  # steps skipped so far, per member

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The scalar to call backward on: sum over members of S[m] * loss[m] (loss [M], fp32)."""
        return (loss.float() * self.scale).sum()

    @torch.no_grad()
    def unscale_(self, roles: list[Any]) -> torch.Tensor:
        """Divide every gradient by its member's scale; returns finite [M] (bool): whose gradients are all finite.

        A member with a non-finite gradient gets zeros instead, so no gradient transform spreads inf or NaN."""
        inverse = self.scale.double().reciprocal().float()
        finite = torch.ones_like(self.streak, dtype=torch.bool)
        grads = []
        for role in roles:
            if role.param.grad is None:
                continue
            g = role.per_member(role.param.grad)
            if g.shape[0] != finite.shape[0]:
                raise ValueError(f"train.precision fp16: expected gradients with a member axis of {finite.shape[0]}, "
                                 f"got {list(g.shape)} for '{role.name}'")
            g.mul_(inverse.view(-1, *([1] * (g.dim() - 1))))
            finite &= torch.isfinite(g).flatten(1).all(dim=1)
            grads.append(g)
        for g in grads:
            g.masked_fill_(~finite.view(-1, *([1] * (g.dim() - 1))), 0.0)
        return finite

    @torch.no_grad()
    def update_(self, finite: torch.Tensor) -> None:
        """GradScaler's update, per member (torch._amp_update_scale_'s rule)."""
        streak = torch.where(finite, self.streak + 1, torch.zeros_like(self.streak))
        grow = streak >= self.growth_interval
        self.scale = torch.where(finite, torch.where(grow, self.scale * self.growth, self.scale),
                                 self.scale * self.backoff)
        self.streak = torch.where(grow, torch.zeros_like(streak), streak)
        self.skipped += (~finite).long()

    def keep_members_(self, index: torch.Tensor) -> None:
        index = index.to(self.scale.device)
        self.scale, self.streak, self.skipped = self.scale[index], self.streak[index], self.skipped[index]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale.clone(), "streak": self.streak.clone(), "skipped": self.skipped.clone()}

    def load_state_dict(self, saved: dict[str, torch.Tensor]) -> None:
        self.scale, self.streak, self.skipped = (saved[k].to(self.scale.device).clone()
                                                 for k in ("scale", "streak", "skipped"))


@dataclass
class MixedPrecision:
    """What a non-fp32 step wraps around its pieces (see `Step.__call__`); None stands for fp32."""

    name: str  # tf32 | bf16 | fp16
    device_type: str
    scaler: MemberGradScaler | None = None

    def forward_context(self) -> contextlib.AbstractContextManager:
        """Around the model and the loss: autocast at bf16/fp16; TF32 matmuls at tf32."""
        if self.name in AUTOCAST_DTYPES:
            return torch.autocast(self.device_type, dtype=AUTOCAST_DTYPES[self.name])
        return tf32_matmuls() if self.device_type == "cuda" else contextlib.nullcontext()

    def keep_members_(self, index: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.keep_members_(index)


def make_precision(name: str, device: torch.device, members: int) -> MixedPrecision | None:
    """The step's precision for `train.precision` on this device (None for fp32: the plain step)."""
    if name == "fp32":
        return None
    if name not in ("tf32", *AUTOCAST_DTYPES):
        raise ValueError(f"train.precision: expected fp32, tf32, bf16 or fp16, got {name!r}")
    scaler = MemberGradScaler(members, device) if name == "fp16" else None
    return MixedPrecision(name, device.type, scaler)


@torch.no_grad()
def snapshot_members(trainer: "Trainer") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(live tensor, copy) of every stacked weight and optimizer state tensor: what a skipped member gets back."""
    pairs = []
    for i, role in enumerate(trainer.roles):
        pairs.append((role.per_member(role.param.data), role.per_member(role.param.data).clone()))
        for value in trainer.optimizer.state[i].values():
            if value.shape == role.param.shape:
                pairs.append((role.per_member(value), role.per_member(value).clone()))
    return pairs


@torch.no_grad()
def restore_members_(pairs: list[tuple[torch.Tensor, torch.Tensor]], skipped: torch.Tensor) -> None:
    """Put the skipped members' rows of each tensor back from its copy (the others keep their new values)."""
    for live, saved in pairs:
        mask = skipped.view(-1, *([1] * (live.dim() - 1)))
        live.copy_(torch.where(mask, saved, live))
