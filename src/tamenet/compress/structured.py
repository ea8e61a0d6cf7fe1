"""Structured pruning that really shrinks the tensors, on a member exported as plain PyTorch (H1).

Unstructured masks (`prune.py`) zero single weights and leave every tensor its size; structured
pruning removes whole units, so the layers get narrower and the computation cheaper:

- *neurons* (`unit="neurons"`): hidden units of the dense layers (`nn.Linear`), the output layer kept;
- *channels* (`unit="channels"`): output channels of the convolutions (`nn.Conv1d/2d`);
- *blocks* (`unit="blocks"`): whole residual blocks whose skip is the identity (`Residual` with no
  projection shortcut: `x + s body(x)`, or `act(x + s body(x))`); such a block's input and output
  have one shape, so removing its body leaves `x` (or `act(x)`) and keeps every shape.

Neurons and channels go through Torch-Pruning's dependency graph (G. Fang et al., "DepGraph:
Towards Any Structural Pruning", CVPR 2023): removing unit j of a layer also removes what is
coupled to it (its bias, its BatchNorm's gamma, beta and running statistics, the j-th input of
every layer that reads it, the same channel on both sides of a residual addition, the j-th group of
features behind a flatten). In every layer (every coupled group) the `n - floor(n (1 - share))`
units of lowest importance are removed:

- ``l1`` / ``l2``: the group's mean L1 / L2 magnitude per unit (the unit's incoming weights and
  bias, its norm's affine parameters and its outgoing weights in the layers that read it;
  `tp.importance.GroupMagnitudeImportance(p)`; Li et al., "Pruning filters for efficient
  ConvNets", ICLR 2017);
- ``bn_gamma``: `|gamma|` of the unit's BatchNorm (network slimming, Liu et al., "Learning
  efficient convolutional networks through network slimming", ICCV 2017; `tp.importance.
  BNScaleImportance`); a layer without BatchNorm keeps all its units.

Blocks are ranked by their own criterion: ``l1`` the mean |w| of the body's last weight layer
(times the block's residual scale), ``l2`` its root mean square, ``bn_gamma`` the mean |gamma| of
the body's last BatchNorm: the branch's output is proportional to these. The `floor(share n)`
lowest of the n removable blocks go (Veit et al., "Residual networks behave like ensembles of
relatively shallow networks", NIPS 2016, show single blocks can go at a small cost).

The cut model computes what the unpruned one does with the removed units' outgoing weights zeroed
(`masked_equivalent`) wherever the kept units do not depend on the removed ones: dense and
convolutional layers, BatchNorm (per unit), activations, pooling, dropout, residual additions.
A LayerNorm or GroupNorm over the pruned units normalizes by the statistics of the units that are
left, so there the cut changes the function beyond the mask; fine-tune after it.

What is supported: any `nn.Module` that Torch-Pruning traces (everything `export_member` writes:
MLP, CNN, FCN, ResNet members, with `Standardize`, `InputMask`, `Residual`, the norms). The
`removed` part of the summary lists, per layer, the input indices (of the unpruned layer) that
were cut, which is what `masked_equivalent` zeroes to build the same function on the unpruned
model.

Torch-Pruning is the optional extra ``compress`` (`pip install tamenet[compress]`).
"""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checkpoints import CheckpointError, read_weights_only

UNITS: dict[str, str] = {
    "neurons": "hidden units of the dense layers (nn.Linear), the output layer kept",
    "channels": "output channels of the convolutions (nn.Conv1d / nn.Conv2d)",
    "blocks": "whole residual blocks with an identity skip, replaced by that skip",
}
"""What `prune_structured` can remove -> what that means."""

IMPORTANCES: dict[str, str] = {
    "l1": "mean L1 magnitude of each unit's coupled weights (Li et al. 2017)",
    "l2": "mean L2 magnitude of each unit's coupled weights",
    "bn_gamma": "|gamma| of each unit's BatchNorm (network slimming, Liu et al. 2017)",
}
"""Importance criteria -> what they measure."""

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def check_share(share: Any) -> float:
    """The share of units to remove as a float, refused unless it is a number in [0, 1)."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= float(share) < 1:
        raise ValueError(f"share: expected the share of units to remove, a number in [0, 1), got {share!r}")
    return float(share)


def check_choice(value: Any, table: dict[str, str], what: str) -> str:
    if value not in table:
        raise ValueError(f"{what}: unknown {what} {value!r} (valid: {', '.join(table)})")
    return value


def _torch_pruning():
    from ..extras import require

    require("torch_pruning", extra="compress", feature="structured pruning")
    import torch_pruning

    return torch_pruning


# ------------------------------------------------------------------------------------------------ measurements
def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def saved_bytes(module: nn.Module) -> int:
    """Bytes of the module's state dict as `torch.save` writes it (its tensors at their shapes)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def macs(module: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates per input row (`tp.utils.count_ops_and_params` on `example_input`, which averages
    over the batch)."""
    tp = _torch_pruning()
    count, _ = tp.utils.count_ops_and_params(module, example_input)
    return int(round(count))


@torch.no_grad()
def latency_ms(module: nn.Module, example_input: torch.Tensor, *, repeats: int = 30, warmup: int = 5) -> float:
    """Median wall time of one eval-mode forward pass, milliseconds, with one CPU thread (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    was_training = module.training
    module.eval()
    try:
        for _ in range(warmup):
            module(example_input)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            module(example_input)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        module.train(was_training)
    return 1000.0 * statistics.median(times)


def measure(module: nn.Module, example_input: torch.Tensor, *, repeats: int = 30) -> dict[str, float]:
    """Parameters, MACs per row, state-dict bytes and median latency (ms, 1 thread, the whole `example_input`)."""
    return {"parameters": parameter_count(module), "macs": macs(module, example_input),
            "bytes": saved_bytes(module), "latency_ms": latency_ms(module, example_input, repeats=repeats)}


# ------------------------------------------------------------------------------------------------ the pruning
@dataclass
class StructuredSummary:
    """What `prune_structured` did: the settings, the figures before and after, and what it removed."""

    unit: str
    importance: str
    share: float
    before: dict[str, float]
    after: dict[str, float]
    removed: dict[str, list[int]] = field(default_factory=dict)  # layer -> input indices cut (unpruned numbering)
    removed_blocks: list[str] = field(default_factory=list)  # names of the blocks replaced by their skip
    widths: dict[str, list[int]] = field(default_factory=dict)  # layer -> [units before, units after]

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "importance": self.importance, "share": self.share, "before": self.before,
                "after": self.after, "removed_inputs": self.removed, "removed_blocks": self.removed_blocks,
                "widths": self.widths}


def _widths(module: nn.Module) -> dict[str, int]:
    out = {}
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear):
            out[name] = layer.out_features
        elif isinstance(layer, CONVS):
            out[name] = layer.out_channels
    return out


def _importance(tp, importance: str):
    if importance == "bn_gamma":
        return tp.importance.BNScaleImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if importance == "l1" else 2)


def _prunable_layers(module: nn.Module, unit: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """(layers whose units are removed, layers to leave as they are) for neurons or channels."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in module.modules() if isinstance(m, CONVS)]
    if unit == "neurons":
        # the last dense layer gives the outputs: its units are the classes (or the target)
        return linears[:-1], [*convs, *linears[-1:]]
    # the last layer of an FCN is a convolution giving the class maps; keep it when no Linear follows
    keep = [] if linears else convs[-1:]
    return [c for c in convs if c not in keep], [*linears, *keep]


def _prune_units(module: nn.Module, example_input: torch.Tensor, share: float, unit: str, importance: str,
                 summary: StructuredSummary) -> None:
    tp = _torch_pruning()
    targets, ignored = _prunable_layers(module, unit)
    if not targets:
        kind = "dense hidden layers (nn.Linear before the output layer)" if unit == "neurons" else \
            "convolutions (nn.Conv1d / nn.Conv2d)"
        raise ValueError(f"unit {unit!r}: expected a model with {kind}, this one has none")
    if importance == "bn_gamma" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        raise ValueError("importance 'bn_gamma': expected a model with BatchNorm layers (model.norm: batch), "
                         "this one has none; use l1 or l2")
    names = {m: n for n, m in module.named_modules()}
    pruner = tp.pruner.MetaPruner(module, example_input, importance=_importance(tp, importance),
                                  pruning_ratio=share, ignored_layers=ignored)
    with torch.no_grad():
        for group in pruner.step(interactive=True):
            for dep, idxs in group:
                layer = dep.target.module
                if isinstance(layer, (nn.Linear, *CONVS)) and dep.handler.__name__ == "prune_in_channels":
                    summary.removed.setdefault(names[layer], []).extend(int(i) for i in idxs)
            group.prune()
    for name in summary.removed:
        summary.removed[name].sort()


def block_scores(module: nn.Module, importance: str) -> dict[str, float]:
    """Name -> norm criterion of every removable residual block (an identity skip): see the module docstring."""
    from ..models.export import Residual

    scores = {}
    for name, block in module.named_modules():
        if not isinstance(block, Residual) or block.shortcut is not None:
            continue
        if importance == "bn_gamma":
            norms = [m for m in block.body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            if not norms:
                raise ValueError(f"importance 'bn_gamma': block {name!r} has no BatchNorm; use l1 or l2")
            scores[name] = float(norms[-1].weight.detach().abs().mean())
            continue
        weights = [m.weight for m in block.body.modules() if isinstance(m, (nn.Linear, *CONVS))]
        if not weights:
            continue
        w = weights[-1].detach()
        norm = w.abs().mean() if importance == "l1" else w.square().mean().sqrt()
        scores[name] = abs(block.scale) * float(norm)
    return scores


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, child, new)


def _prune_blocks(module: nn.Module, share: float, importance: str, summary: StructuredSummary) -> None:
    scores = block_scores(module, importance)
    if not scores:
        raise ValueError("unit 'blocks': expected a model with residual blocks whose skip is the identity "
                         "(model.residual: true with equal widths, or a resnet's blocks without a projection); "
                         "this one has none")
    count = math.floor(share * len(scores) + 1e-9)
    chosen = sorted(scores, key=lambda n: (scores[n], n))[:count]
    for name in chosen:
        block = module.get_submodule(name)
        _replace(module, name, block.activation if block.activation is not None else nn.Identity())
    summary.removed_blocks = sorted(chosen)


def prune_structured(module: nn.Module, example_input: torch.Tensor, *, share: float, importance: str = "l1",
                     unit: str = "neurons", repeats: int = 30) -> tuple[nn.Module, StructuredSummary]:
    """A smaller copy of `module` without the `share` of its units of lowest `importance`, and a summary.

    `unit`: "neurons", "channels" or "blocks" (`UNITS`); `importance`: "l1", "l2" or "bn_gamma"
    (`IMPORTANCES`). The input module is left as it is. The summary gives parameters, MACs (per input
    row), state-dict bytes and the median latency (1 thread) before and after, the
    widths of every layer, and what was removed. The copy is in the mode `module` was in and trains."""
    share = check_share(share)
    check_choice(unit, UNITS, "unit")
    check_choice(importance, IMPORTANCES, "importance")
    if not isinstance(module, nn.Module):
        raise TypeError(f"prune_structured: expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"prune_structured: expected example_input as a tensor, got {type(example_input).__name__}")
    _torch_pruning()
    was_training = module.training
    small = copy.deepcopy(module).eval()
    summary = StructuredSummary(unit, importance, share, before=measure(small, example_input, repeats=repeats), after={})
    widths = _widths(small)
    if share > 0:
        if unit == "blocks":
            _prune_blocks(small, share, importance, summary)
        else:
            _prune_units(small, example_input, share, unit, importance, summary)
    after = _widths(small)
    summary.widths = {n: [w, after[n]] for n, w in widths.items() if n in after}
    summary.after = measure(small, example_input, repeats=repeats)
    small.requires_grad_(True)
    return small.train(was_training), summary


@torch.no_grad()
def masked_equivalent(module: nn.Module, summary: StructuredSummary) -> nn.Module:
    """A copy of the unpruned `module` that computes what the pruned one does, by masks instead of cuts: the
    inputs each layer lost are zeroed in its weight (`summary.removed`), and removed blocks' bodies scaled by 0."""
    masked = copy.deepcopy(module)
    for name, idxs in summary.removed.items():
        layer = masked.get_submodule(name)
        layer.weight[:, idxs] = 0.0
    for name in summary.removed_blocks:
        masked.get_submodule(name).scale = 0.0
    return masked


# ------------------------------------------------------------------------------------------------ fine-tuning
def fine_tune(module: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int, task: str = "classification",
              lr: float = 1e-3, batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0) -> list[float]:
    """Train `module` in place on (X, y) with Adam for `epochs` passes over shuffled mini-batches; returns the
    mean training loss of each epoch. Loss: cross-entropy on the logits (classification, y class indices) or
    mean squared error on the one output (regression). Left in eval mode.

    A plain loop, not the population trainer: after structured pruning every layer has its own width (and
    blocks may be gone), an architecture no recipe describes, so it cannot be loaded back into a population."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fine_tune: expected epochs as a whole number >= 0, got {epochs!r}")
    if task not in ("classification", "regression"):
        raise ValueError(f"fine_tune: unknown task {task!r} (valid: classification, regression)")
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"fine_tune: expected as many targets as rows (> 0), got {len(X)} rows and {len(y)} targets")
    generator = torch.Generator().manual_seed(seed)
    optimizer = _Adam([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    losses = []
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        total = 0.0
        for start in range(0, len(X), batch_size):
            rows = order[start:start + batch_size]
            out = module(X[rows])
            if task == "classification":
                loss = nn.functional.cross_entropy(out, y[rows].long())
            else:
                loss = nn.functional.mse_loss(out.reshape(-1), y[rows].reshape(-1).to(out.dtype))
            module.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        losses.append(total / len(X))
    module.eval()
    return losses


class _Adam:
    """Adam (Kingma & Ba, ICLR 2015) with L2 weight decay added to the gradient, as `torch.optim.Adam`:
    `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`, `w <- w - lr m_hat / (sqrt(v_hat) + eps)`. Our own few
    lines: `torch.optim`'s first step imports TorchDynamo, seconds of start-up for a fine-tuning of seconds."""

    def __init__(self, params: list[torch.Tensor], *, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.decay, self.betas, self.eps, self.t = params, lr, weight_decay, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad if self.decay == 0 else p.grad + self.decay * p
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / (1 - b2 ** self.t)).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1 ** self.t))


# ------------------------------------------------------------------------------------------------ saving
SAVED_FORMAT = 1


def save_shrunk(path, module: nn.Module, info: dict[str, Any]) -> None:
    """Write the pruned module whole (`torch.save` of the module: its classes and shapes, no recipe needed to
    rebuild it) with `info` (the summary, the run it came from), atomically."""
    from ..track import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"format": "tamenet-shrunk", "version": SAVED_FORMAT, "module": module, "info": info}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_shrunk(path) -> tuple[nn.Module, dict[str, Any]]:
    """(module, info) back from `save_shrunk`: read weights-only, the file's classes limited to torch.nn's and
    tamenet's modules (`checkpoints.read_weights_only`)."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: expected a model file written by tamenet shrink, got "
                                f"{'a directory' if file.is_dir() else 'nothing there'}")
    try:
        payload = read_weights_only(file, modules_of=("torch.nn.", "tamenet."))
    except CheckpointError as err:
        raise ValueError(f"{file}: not a model file written by tamenet shrink ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != "tamenet-shrunk":
        raise ValueError(f"{file}: not a model file written by tamenet shrink")
    return payload["module"], payload["info"]


__all__ = ["IMPORTANCES", "UNITS", "StructuredSummary", "block_scores", "check_share", "fine_tune", "latency_ms",
           "load_shrunk", "macs", "masked_equivalent", "measure", "parameter_count", "prune_structured",
           "save_shrunk", "saved_bytes"]
