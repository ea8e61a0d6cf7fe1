"""Per-member losses and metrics for the two heads of A1.

Classification: softmax cross-entropy `-log softmax(z)_y`. Regression: `1/2 (y - y_hat)^2`.
Both are averaged over the batch, giving one value per member [M].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TASK_METRIC = {"classification": "accuracy", "regression": "rmse"}
"""The metric each task reports: accuracy (higher is better) or RMSE in target units (lower is better)."""


def _targets(y: torch.Tensor, members: int) -> torch.Tensor:
    return y.unsqueeze(0).expand(members, *y.shape) if y.dim() == 1 else y


def member_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss per member: out [M, B, K], y [B] (shared) or [M, B] -> [M]."""
    m, b = out.shape[:2]
    y = _targets(y, m)
    if task == "classification":
        flat = F.cross_entropy(out.reshape(m * b, -1), y.reshape(-1), reduction="none")
        return flat.view(m, b).mean(1)
    return 0.5 * (out.squeeze(-1) - y).square().mean(1)


@torch.no_grad()
def member_score_sum(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Per member: number of correct predictions (classification) or sum of squared errors (regression)."""
    y = _targets(y, out.shape[0])
    if task == "classification":
        return (out.argmax(-1) == y).sum(1)
    return (out.squeeze(-1) - y).square().sum(1)


def finish_metric(score_sum: torch.Tensor, count: int, task: str, *, target_std: float = 1.0) -> torch.Tensor:
    """Accuracy from correct counts, or RMSE (in the target's own units) from squared-error sums."""
    mean = score_sum.to(torch.float64) / count
    return mean if task == "classification" else torch.sqrt(mean) * target_std


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, task: str, *, target_std: float = 1.0, batch_size: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss [M] and metric [M] of every member on (X, y), in evaluation mode (no dropout, running BN statistics)."""
    was_training = model.training
    model.eval()
    loss_sum, score_sum = None, None
    for start in range(0, len(X), batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        out = model(xb)
        part = member_loss(out, yb, task).to(torch.float64) * len(xb)
        score = member_score_sum(out, yb, task).to(torch.float64)
        loss_sum = part if loss_sum is None else loss_sum + part
        score_sum = score if score_sum is None else score_sum + score
    model.train(was_training)
    if loss_sum is None:
        nan = torch.full((getattr(model, "members", 1),), float("nan"), dtype=torch.float64)
        return nan, nan
    return loss_sum / len(X), finish_metric(score_sum, len(X), task, target_std=target_std)
