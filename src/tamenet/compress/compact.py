"""The population-aware path of structured pruning (H1): an MLP population's hidden layers narrowed in place of
the members, each member keeping its own top-k units, k the same for every member.

Hidden layer l of width n keeps k = floor(n (1 - share)) units (at least 1) per member, chosen by
member m's own scores:

- ``l1``: `sum_i |W_l[m, i, j]| + sum_o |W_{l+1}[m, j, o]|` (unit j's incoming and outgoing weights);
- ``l2``: the same with squares;
- ``bn_gamma``: `|gamma_l[m, j]|` of its BatchNorm (network slimming).

The kept units stay in their order; the dense weights [M, in, out] become [M, in, k], the next
layer's [M, out, .] becomes [M, k, .], biases, BatchNorm's gamma, beta and running statistics are
gathered alike. The result is an ordinary population of widths k_l, built from the same recipe with
`model.widths` changed: it trains, saves and reloads as any other, so `tamenet evaluate`, `predict`,
`export` and `train.init_from` (fine-tuning through the population trainer) read it.

Supported: `model.kind: mlp` without residual connections (a skip would need the same units on both
sides), without weight normalization, pruning masks or quantization, with `model.norm` none or batch
(a LayerNorm over fewer units would change the function). Member m of the narrowed population equals
member m of the original with the removed units' outgoing weights zeroed.
"""

from __future__ import annotations

import dataclasses

import torch

from ..config import Recipe
from .structured import IMPORTANCES, check_choice, check_share


def _refuse(recipe: Recipe) -> None:
    model = recipe.model
    problems = []
    if model.kind != "mlp":
        problems.append(f"model.kind: {model.kind} (expected mlp)")
    if model.residual:
        problems.append("model.residual: true")
    if model.weight_norm != "none":
        problems.append(f"model.weight_norm: {model.weight_norm}")
    if model.norm not in ("none", "batch"):
        problems.append(f"model.norm: {model.norm} (expected none or batch)")
    if recipe.prune.active:
        problems.append("pruning masks (prune)")
    if getattr(recipe.quantize, "active", False):
        problems.append("quantization (quantize)")
    if problems:
        raise ValueError("narrowing a population's hidden layers supports plain MLPs; this one has "
                         + ", ".join(problems) + " (export a member and use unit neurons instead)")


def unit_scores(state: dict[str, torch.Tensor], layer: int, layers: int, importance: str) -> torch.Tensor:
    """Scores [M, n] of hidden layer `layer`'s units per member (see the module docstring)."""
    if importance == "bn_gamma":
        key = f"norms.{layer}.weight"
        if key not in state:
            raise ValueError("importance 'bn_gamma': expected a model with BatchNorm (model.norm: batch); use l1 or l2")
        return state[key].abs()
    nxt = f"hidden.{layer + 1}.weight" if layer + 1 < layers else "output.weight"
    w_in, w_out = state[f"hidden.{layer}.weight"], state[nxt]  # [M, in, n], [M, n, out]
    power = 1 if importance == "l1" else 2
    return w_in.abs().pow(power).sum(1) + w_out.abs().pow(power).sum(2)


@torch.no_grad()
def narrow_population(model, recipe: Recipe, *, share: float, importance: str = "l1"):
    """(narrowed population, its recipe, kept [layer -> LongTensor [M, k]]) of an MLP population `model` trained
    with `recipe`: every member keeps its own top-k units of each hidden layer (module docstring)."""
    from ..models.build import build_model
    from ..models.mlp import MLP
    from ..train.hyper import member_seeds

    share = check_share(share)
    check_choice(importance, IMPORTANCES, "importance")
    if not isinstance(model, MLP):
        raise TypeError(f"narrow_population: expected an MLP population, got {type(model).__name__}")
    _refuse(recipe)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    layers = len(model.hidden)
    kept, widths = {}, []
    for layer in range(layers):
        scores = unit_scores(state, layer, layers, importance)
        n = scores.shape[1]
        k = max(1, int(n * (1 - share)))
        order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
        keep = torch.sort(order, dim=1).values  # [M, k], the kept units in their order
        kept[layer], widths = keep, widths + [k]
        cols = keep.unsqueeze(1)
        w = state[f"hidden.{layer}.weight"]
        state[f"hidden.{layer}.weight"] = torch.gather(w, 2, cols.expand(w.shape[0], w.shape[1], k))
        for key in (f"hidden.{layer}.bias", *(f"norms.{layer}.{p}" for p in ("weight", "bias", "running_mean",
                                                                            "running_var"))):
            if key in state:
                state[key] = torch.gather(state[key], 1, keep)
        nxt = f"hidden.{layer + 1}.weight" if layer + 1 < layers else "output.weight"
        w = state[nxt]
        state[nxt] = torch.gather(w, 1, keep.unsqueeze(2).expand(w.shape[0], k, w.shape[2]))
    narrowed_recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, widths=widths))
    n_in = model.hidden[0].in_features if layers else model.output.in_features
    narrowed = build_model(narrowed_recipe.model, n_in=n_in, n_out=model.output.out_features,
                           seeds=member_seeds(recipe), prune=recipe.prune, quantize=recipe.quantize)
    narrowed.load_state_dict(state)
    return narrowed.eval(), narrowed_recipe, kept


@torch.no_grad()
def masked_population(model, kept: dict[int, torch.Tensor]):
    """A copy of the unnarrowed population with each member's removed units' outgoing weights zeroed."""
    import copy

    masked = copy.deepcopy(model)
    layers = len(masked.hidden)
    for layer, keep in kept.items():
        nxt = masked.hidden[layer + 1] if layer + 1 < layers else masked.output
        drop = torch.ones(nxt.weight.shape[:2], dtype=torch.bool)
        drop.scatter_(1, keep, False)
        nxt.weight[drop] = 0.0
    return masked.eval()


__all__ = ["masked_population", "narrow_population", "unit_scores"]
