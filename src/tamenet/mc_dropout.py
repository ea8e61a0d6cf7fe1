"""Monte-Carlo dropout prediction (D2): the average over T dropout masks, with its spread.

    p_hat(x) = 1/T sum_t softmax(f(x | R_t)),   std = sqrt(1/T sum_t (p_t - p_hat)^2),
    predictive entropy H[p_hat] = -sum_k p_hat_k log p_hat_k

with R_t a random dropout mask (Gal and Ghahramani, "Dropout as a Bayesian approximation",
ICML 2016); for regression the mean and standard deviation of the T values. The standard
deviation is the spread of the T predictions (divided by T, as in Gal and Ghahramani's
predictive variance). A population's members are further samples of the same average unless
one member is chosen.

The T passes are one batched pass: dropout stays on, BatchNorm uses its running statistics
(eval mode), DropConnect and noise are off, and the inputs are tiled T times along the batch
axis (in chunks of at most `max_rows` tiled rows). A model may run the T copies itself
(`mc_forward`, as `MLP` does: the layers before its first active dropout run once on the untiled
rows). Any population whose dropout layers are `tamenet.nn.Dropout` modules works through the
tiling path. The masks come from `MemberRandom.generator_keep` (drop probabilities rounded to a
multiple of 2^-16), not from the training masks' hash stream.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .nn import Dropout
from .nn.layers import tile

MC_STEP = 1 << 30
"""The random step of Monte-Carlo masks (plus the chunk number): far from any training step."""


def dropout_layers(model: nn.Module) -> list[Dropout]:
    """The model's `tamenet.nn.Dropout` modules that drop something (p > 0 for some member)."""
    return [m for m in model.modules() if isinstance(m, Dropout) and m.active]


@contextmanager
def mc_sampling(model: nn.Module) -> Iterator[list[Dropout]]:
    """Within the block: eval mode (running BatchNorm statistics, no noise or DropConnect) but
    every active dropout layer draws masks. Restores the model's mode and random step afterwards."""
    layers = dropout_layers(model)
    if not layers:
        ours = [m for m in model.modules() if isinstance(m, Dropout)]
        kinds = sorted({type(m).__name__ for m in model.modules()
                        if "dropout" in type(m).__name__.lower() and not isinstance(m, Dropout)})
        found = (" (its dropout layers all have p = 0: it was trained without dropout)" if ours and not kinds else
                 f" (found {', '.join(kinds)}, which tamenet cannot sample)" if kinds else " (it has no dropout layer)")
        raise ValueError(
            "Monte-Carlo dropout needs a model with active dropout: expected tamenet.nn.Dropout layers with "
            f"p > 0 (e.g. model.dropout: 0.5), got none{found}"
        )
    random = getattr(model, "random", None)
    step = random.step if random is not None else None
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.sampling = True
    try:
        yield layers
    finally:
        for layer in layers:
            layer.sampling = False
        model.train(was_training)
        if random is not None:
            random.step = step


@torch.no_grad()
def mc_outputs(model: nn.Module, inputs: torch.Tensor, samples: int, *, max_rows: int = 16_384) -> torch.Tensor:
    """Raw outputs [M, T, N, K] of T dropout masks for model inputs [N, ...] (already preprocessed).

    One batched pass per chunk of rows: the inputs tiled T times along the batch axis (axis 0), or
    the model's own `mc_forward(x, T)` when it has one (the MLP runs the layers before its first
    active dropout once). Chunk c draws its masks at random step `MC_STEP + c`, so
    the result is a pure function of the members' seeds.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"Monte-Carlo dropout: expected T (samples) to be a positive integer, got {samples!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"Monte-Carlo dropout: expected max_rows to be a positive integer, got {max_rows!r}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1 or len(inputs) == 0:
        got = list(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"Monte-Carlo dropout: expected inputs [N, ...] with N >= 1 rows, got {got}")
    chunk = max(1, max_rows // samples)
    random = getattr(model, "random", None)
    outs = []
    with mc_sampling(model):
        for c, start in enumerate(range(0, len(inputs), chunk)):
            if random is not None:
                random.step = MC_STEP + c
            x = inputs[start : start + chunk]
            fast = getattr(model, "mc_forward", None)
            out = fast(x, samples) if fast is not None else model(tile(x, samples, 0))
            outs.append(out.reshape(out.shape[0], samples, len(x), *out.shape[2:]))
    return torch.cat(outs, dim=2)


def mc_summary(outputs: torch.Tensor, task: str, *, member: int | None = None) -> dict[str, torch.Tensor]:
    """Mean, standard deviation and (classification) predictive entropy from outputs [M, T, N, K].

    classification: `mean` [N, K] class probabilities, `std` [N, K], `entropy` [N] = H[mean] (nats);
    regression: `mean` [N] and `std` [N] of the (scaled) values. All members' samples are pooled
    unless `member` picks one.
    """
    if outputs.dim() != 4:
        raise ValueError(f"mc_summary: expected outputs [M, T, N, K], got {list(outputs.shape)}")
    if member is not None:
        if not 0 <= member < outputs.shape[0]:
            raise ValueError(f"member: expected an index in [0, {outputs.shape[0] - 1}], got {member}")
        outputs = outputs[member : member + 1]
    samples = outputs.reshape(-1, *outputs.shape[2:]).double()  # [S, N, K]
    if task == "classification":
        probs = torch.softmax(samples, dim=-1)
        mean = probs.mean(0)
        return {"mean": mean, "std": probs.std(0, correction=0), "entropy": torch.special.entr(mean).sum(-1)}
    if task == "regression":
        values = samples[..., 0]
        return {"mean": values.mean(0), "std": values.std(0, correction=0)}
    raise ValueError(f"mc_summary: expected task 'classification' or 'regression', got {task!r}")


def mc_predict(
    model: nn.Module, inputs: torch.Tensor, samples: int, task: str, *, member: int | None = None, max_rows: int = 16_384
) -> dict[str, torch.Tensor]:
    """Monte-Carlo dropout prediction for preprocessed inputs: `mc_summary(mc_outputs(...))`."""
    return mc_summary(mc_outputs(model, inputs, samples, max_rows=max_rows), task, member=member)


__all__ = ["MC_STEP", "dropout_layers", "mc_outputs", "mc_predict", "mc_sampling", "mc_summary"]
