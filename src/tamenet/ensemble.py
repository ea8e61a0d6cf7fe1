"""Averaging ensembles (D5): M seeds trained as one population, predicting with their average.

Classification averages the members' class probabilities, `p(y | x) = 1/M sum_m softmax(z_m(x))`;
its loss is the cross-entropy of that average, `-log p(y | x)`, and its label the arg max.
Regression averages the members' predictions, `y_hat = 1/M sum_m y_hat_m`; its loss is
`1/2 (y - y_hat)^2` (in standardized target units, like the members' losses) and its RMSE is in the
target's own units. Both are what `TrainedModel.predict` returns for a population.

References: Hansen & Salamon, "Neural network ensembles", IEEE TPAMI 1990; Lakshminarayanan et
al., "Simple and scalable predictive uncertainty estimation using deep ensembles", NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .config import Recipe, RecipeError
from .data import SplitData
from .models import Population
from .train import TASK_METRIC

EVAL_ROWS = 4096  # rows per forward pass when evaluating


def ensemble_seeds(seed: Any, members: int) -> list[int]:
    """The seeds of an ensemble of `members`: base, base + 1, ..., base + M - 1 from `seed: base`.

    A recipe whose seed is already a list of M seeds keeps them (a list of one is a base seed);
    a list of any other length is refused, since it would make a population of a different size.
    """
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"ensemble: expected a positive integer number of members, got {members!r}")
    if isinstance(seed, list):
        if len(seed) == members:
            return list(seed)
        if len(seed) != 1:
            raise RecipeError(
                f"ensemble: {members} members asked for, but the recipe's seed is already a list of {len(seed)} "
                f"seeds; give seed one base seed (members get base, base + 1, ...) or a list of {members}"
            )
        seed = seed[0]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecipeError(f"seed: expected a non-negative integer or a list of them, got {seed!r}")
    return [seed + m for m in range(members)]


def ensemble_recipe(recipe: Recipe, members: int) -> Recipe:
    """The recipe with one seed per ensemble member (other per-member lists must have length 1 or M)."""
    return dataclasses.replace(recipe, seed=ensemble_seeds(recipe.seed, members))


def combine(outputs: torch.Tensor, task: str) -> torch.Tensor:
    """The ensemble's prediction from the members' raw outputs [M, N, K]: mean probabilities [N, K] or values [N]."""
    if task == "classification":
        return torch.softmax(outputs.to(torch.float64), dim=-1).mean(0)
    return outputs.squeeze(-1).to(torch.float64).mean(0)


@torch.no_grad()
def ensemble_predict(model: Population, X: torch.Tensor, task: str) -> torch.Tensor:
    """The averaged prediction of every member of `model` for the shared inputs X [N, F], in evaluation mode."""
    was_training = model.training
    model.eval()
    parts = [combine(model(X[start : start + EVAL_ROWS]), task) for start in range(0, len(X), EVAL_ROWS)]
    model.train(was_training)
    return torch.cat(parts)


def ensemble_scores(
    prediction: torch.Tensor, y: torch.Tensor, task: str, *, target_std: float = 1.0
) -> dict[str, float]:
    """Loss and metric of an averaged prediction: cross-entropy of the mean probabilities and accuracy,
    or `1/2 (y - y_hat)^2` and RMSE in target units (`target_std` undoes the target's standardization)."""
    metric = TASK_METRIC[task]
    if task == "classification":
        picked = prediction.gather(1, y.long().unsqueeze(1)).squeeze(1)
        loss = -torch.log(picked.clamp_min(torch.finfo(torch.float64).tiny)).mean()
        value = (prediction.argmax(1) == y).to(torch.float64).mean()
    else:
        error = prediction - y.to(torch.float64)
        loss = 0.5 * error.square().mean()
        value = error.square().mean().sqrt() * float(target_std)
    return {"loss": float(loss), metric: float(value)}


def summarize_ensemble(model: Population, data: SplitData, members: list[dict], seeds: list[int]) -> dict[str, Any]:
    """The ensemble's train / validation / test figures beside the mean and the best of its members' figures.

    `members` are the summary's per-member entries; "best" is the best value of each figure over the members
    (lowest loss, highest accuracy, lowest RMSE), each split on its own.
    """
    task, metric = data.task, TASK_METRIC[data.task]
    splits = {"train": (data.X_train, data.y_train), "val": (data.X_val, data.y_val)}
    if len(data.X_test):
        splits["test"] = (data.X_test, data.y_test)
    higher_better = {"loss": False, metric: metric == "accuracy"}
    out: dict[str, Any] = {
        "members": len(seeds),
        "seeds": list(seeds),
        "combine": f"mean of the members' {'probabilities' if task == 'classification' else 'predictions'}",
    }
    mean: dict[str, dict[str, float]] = {}
    best: dict[str, dict[str, float]] = {}
    for name, (X, y) in splits.items():
        out[name] = ensemble_scores(ensemble_predict(model, X, task), y, task, target_std=data.target_std)
        mean[name], best[name] = {}, {}
        for key, higher in higher_better.items():
            values = [m[name][key] for m in members]
            mean[name][key] = sum(values) / len(values)
            best[name][key] = max(values) if higher else min(values)
    out["members_mean"], out["members_best"] = mean, best
    return out
