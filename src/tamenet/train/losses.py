"""Per-member losses and metrics for the two heads of A1.

Classification: softmax cross-entropy `-log softmax(z)_y`. Regression: `1/2 (y - y_hat)^2`. Dense (a 0/1 target
per pixel, e.g. a segmentation mask [.., H*W]): the binary cross-entropy of each pixel's logit, averaged over the
pixels, with pixel accuracy as its metric. All are averaged over the batch, giving one value per member [M].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TASK_METRIC = {"classification": "accuracy", "regression": "rmse", "dense": "accuracy"}
"""The metric each task reports: accuracy (higher is better) or RMSE in target units (lower is better)."""


def _targets(y: torch.Tensor, members: int, task: str = "classification") -> torch.Tensor:
    shared = y.dim() == (2 if task == "dense" else 1)
    return y.unsqueeze(0).expand(members, *y.shape) if shared else y


def sample_losses(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Loss of every member on every sample: out [M, B, K], y [B] (shared) or [M, B] -> [M, B]."""
    m, b = out.shape[:2]
    y = _targets(y, m, task)
    if task == "classification":
        return F.cross_entropy(out.reshape(m * b, -1), y.reshape(-1), reduction="none").view(m, b)
    if task == "dense":
        return F.binary_cross_entropy_with_logits(out, y.to(out.dtype), reduction="none").mean(-1)
    return 0.5 * (out.squeeze(-1) - y).square()


def member_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss per member: out [M, B, K], y [B] (shared) or [M, B] -> [M]."""
    return sample_losses(out, y, task).mean(1)


@torch.no_grad()
def sample_scores(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Per member and sample: 1 for a correct prediction (classification) or the squared error (regression)."""
    y = _targets(y, out.shape[0], task)
    if task == "classification":
        return out.argmax(-1) == y
    if task == "dense":
        return ((out > 0) == (y > 0.5)).to(torch.float32).mean(-1)
    return (out.squeeze(-1) - y).square()


@torch.no_grad()
def member_score_sum(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Per member: number of correct predictions (classification) or sum of squared errors (regression)."""
    return sample_scores(out, y, task).sum(1)


def finish_metric(score_sum: torch.Tensor, count, task: str, *, target_std=1.0) -> torch.Tensor:
    """Accuracy from correct counts, or RMSE (in the target's own units) from squared-error sums."""
    mean = score_sum.to(torch.float64) / count
    return torch.sqrt(mean) * target_std if task == "regression" else mean


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    task: str,
    *,
    target_std=1.0,
    weight: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss [M] and metric [M] of every member in evaluation mode (no dropout, running BN statistics).

    X [N, F] and y [N] are shared by all members; X [M, N, F], y [M, N] give each member its own rows,
    with `weight` [M, N] (1 = a row, 0 = padding) when their counts differ.
    """
    was_training = model.training
    model.eval()
    members = getattr(model, "members", 1)
    # rows per chunk: about 2^21 activations per layer output keeps tensors small and cache-friendly
    batch_size = batch_size or max(32, (1 << 21) // (members * max(X.shape[-1], 256)))
    per_member = X.dim() == 3 and y.dim() == 2
    n = X.shape[1] if per_member else X.shape[0]
    loss_sum = score_sum = count = None
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        xb, yb = (X[:, part], y[:, part]) if per_member else (X[part], y[part])
        out = model(xb)
        losses = sample_losses(out, yb, task).to(torch.float64)
        scores = sample_scores(out, yb, task).to(torch.float64)
        w = weight[:, part].to(torch.float64) if weight is not None else torch.ones_like(losses)
        sums = ((losses * w).sum(1), (scores * w).sum(1), w.sum(1))
        if loss_sum is None:
            loss_sum, score_sum, count = sums
        else:
            loss_sum, score_sum, count = loss_sum + sums[0], score_sum + sums[1], count + sums[2]
    model.train(was_training)
    if loss_sum is None:
        nan = torch.full((getattr(model, "members", 1),), float("nan"), dtype=torch.float64)
        return nan, nan
    return loss_sum / count, finish_metric(score_sum, count, task, target_std=target_std)


class HardTargets:
    """The training loss of the step (`tamenet.train.step`): each member's mean loss on the batch's labels or
    values [M]. Soft targets (distillation) and mixed labels (mixup) take this place next."""

    def begin_epoch(self, trainer) -> bool:
        return True

    def __call__(self, trainer, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return member_loss(out, y, trainer.data.task)


class SoftTargets:
    """The training loss with soft targets: `-sum_k t_k log softmax(z)_k` per sample, each member's batch mean [M].

    Targets are mixed labels (`augment.mix.MixedLabels`: lam onehot(y_i) + (1 - lam) onehot(y_j), K from the
    outputs) or a tensor [M, B, K] of class probabilities; hard labels and regression values fall back to
    `HardTargets`. With one-hot targets this is exactly the cross-entropy of `HardTargets`."""

    def begin_epoch(self, trainer) -> bool:
        return True

    def __call__(self, trainer, out: torch.Tensor, y) -> torch.Tensor:
        soft = y.soft(out.shape[-1]) if hasattr(y, "soft") else y
        if not (torch.is_tensor(soft) and soft.is_floating_point() and soft.dim() == 3):
            return member_loss(out, soft, trainer.data.task)
        return -(soft.to(out.dtype) * torch.log_softmax(out, dim=-1)).sum(-1).mean(1)
