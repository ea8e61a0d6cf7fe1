"""The population base: what every trainable population is (members, random source, parameter roles),
and a user's own module as a population of one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import MemberRandom


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
    """Base of every trainable population: `members`, its random source and its parameters' roles.

    With `model.input_features` (C6) the population holds a buffer `input_mask` [M, F] (1 = an input
    member m sees, 0 = one it does not): `select_inputs` applies it before the first layer, so the
    masked inputs neither reach the outputs nor receive weight gradients. `tamenet.feature_selection` fills it.
    """

    members: int
    random: MemberRandom
    member_buffers = ("input_mask",)
    stacked = True  # every parameter and member buffer carries the leading member axis [M, ...]

    def param_roles(self) -> list[ParamRole]:
        raise NotImplementedError

    def member_tensors(self) -> dict[str, torch.Tensor]:
        """Everything a member owns, by state-dict name: every parameter (population layers stack them [M, ...])
        and every buffer a module declares in its `member_buffers` (BatchNorm statistics, dropout rates, the
        spectral norm's vectors, the input mask; pruning masks and anchors next). What the best-weight snapshot,
        compaction, chunking and checkpoints handle: declared, never guessed from shapes."""
        out = dict(self.named_parameters())
        for prefix, module in self.named_modules():
            for name in getattr(module, "member_buffers", ()):
                buffer = module._buffers.get(name)
                if buffer is not None:
                    out[f"{prefix}.{name}" if prefix else name] = buffer
        return out

    @torch.no_grad()
    def keep_members_(self, index: torch.Tensor) -> None:
        """Shrink to the members at `index` (current positions), in place: their slice of every member tensor,
        every module's member count, the random streams; gradients are dropped."""
        for t in self.member_tensors().values():
            t.data = t.data[index.to(t.device)].clone()
            if isinstance(t, nn.Parameter):
                t.grad = None
        kept = len(index)
        for module in self.modules():
            if isinstance(getattr(module, "members", None), int):
                module.members = kept
            if hasattr(module, "active") and isinstance(getattr(module, "p", None), torch.Tensor):
                module.active = bool((module.p > 0).any())
        self.random.keep_(index.tolist())

    def add_input_mask(self, n_in: int) -> None:
        """Hold a mask of the inputs, every input kept until `tamenet.feature_selection.select_inputs_` ranks them."""
        self.register_buffer("input_mask", torch.ones(self.members, n_in))

    def select_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, F] or [M, B, F] -> the inputs each member sees: x itself, or [M, B, F] with the masked ones zero."""
        mask = self._buffers.get("input_mask")
        return x if mask is None else x * mask.unsqueeze(1)


class Wrapped(Population):
    """A user's own module as a population of one: outputs gain the member axis [1, B, ...]."""

    stacked = False  # the module's own tensors, without a member axis: the one member owns all of them

    def __init__(self, module: nn.Module, *, seed: int = 0) -> None:
        super().__init__()
        self.module, self.members, self.random = module, 1, MemberRandom([seed])

    def member_tensors(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the user's module: all of it belongs to the population's one member."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def keep_members_(self, index: torch.Tensor) -> None:
        if index.tolist() != [0]:
            raise ValueError(f"a user's module is a population of one: expected to keep member [0], got {index.tolist()}")

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
