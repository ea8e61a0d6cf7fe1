"""`penalty.l1` means the lasso at its stated strength whatever the optimizer (C2).

The proximal step after each optimizer step thresholds by `lr * l1 * P^-1`, `P` the optimizer's own
preconditioner (`PopulationOptimizer.l1_scale`), so every optimizer's fixed point satisfies
`0 in grad L(w) + l1 d|w|`. A linear model on standardized diabetes data is checked against
scikit-learn's `Lasso`, `ElasticNet` and `Ridge`: tamenet's loss `1/2 mean (y - Xw - b)^2` is
scikit-learn's `1/(2n) ||y - Xw - b||^2`, so `Lasso(alpha=l1)` is the same objective; `Ridge`
minimizes `||y - Xw - b||^2 + alpha ||w||^2`, so `alpha = n * l2` (`l2_form: half`) or `2 n l2` (`full`).

Tolerance: the coefficients agree to 1e-6 (absolute, coefficients of size 0.1-0.6 in standardized
units). Training runs in float32 and converges to its rounding level (measured: at most 2e-7 from
scikit-learn's float64 solution at tol 1e-14); 1e-6 leaves a margin above that. The zero pattern
must match exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet, Lasso, Ridge

from tamenet import cross_validate, fit, search
from tamenet.config import RecipeError
from tamenet.models import ParamRole
from tamenet.train import make_optimizer
from tamenet.train.optim import PopulationOptimizer

pytestmark = pytest.mark.usefixtures("one_thread")

STRENGTHS = [0.01, 0.05, 0.1]  # on this split: 1, 4 and 6 of the 10 coefficients exactly zero
NO_EARLY_STOP = {"patience": None, "restore_best": False}
QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
ATOL = 1e-6


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    return load_diabetes(return_X_y=True)


def _linear_recipe(train: dict, penalty: dict) -> dict:
    """A linear model trained full batch on 95% of diabetes (the 5% validation share is only watched)."""
    return {
        "data": {"task": "regression", "val": 0.05, "test": 0.0, "standardize": True},
        "model": {"kind": "linear"},
        "penalty": penalty,
        "train": {"batch_size": "full", "early_stopping": NO_EARLY_STOP, **train},
        "track": QUIET,
        "seed": 0,
    }


def _coefficients(result) -> tuple[np.ndarray, np.ndarray]:
    """(w [M, F], b [M]) of a trained linear population."""
    roles = {r.name: r.param.detach().double().numpy() for r in result.model.param_roles()}
    members = result.model.members
    return roles["output.weight"].reshape(members, -1), roles["output.bias"].reshape(members)


def _train_rows(result) -> tuple[np.ndarray, np.ndarray]:
    return result.data.X_train.double().numpy(), result.data.y_train.double().numpy()


# ------------------------------------------------------------------ the lasso, per optimizer

OPTIMIZERS = {
    "sgd": ({"optimizer": "sgd", "lr": 0.45, "epochs": 600}, "constant"),
    "sgd_momentum": ({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 500}, "constant"),
    "sgd_nesterov": ({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "epochs": 500}, "constant"),
    "rmsprop_momentum": ({"optimizer": "rmsprop", "lr": 0.01, "momentum": 0.5, "epochs": 500}, "cosine"),
    "adam": ({"optimizer": "adam", "lr": 0.1, "epochs": 500}, "cosine"),
}


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_l1_linear_model_is_sklearn_lasso_for_every_optimizer(case):
    """Coefficients to 1e-6 and the same exact zeros as `Lasso(alpha=l1)`, at three strengths in one population."""
    train, schedule = OPTIMIZERS[case]
    X, y = _diabetes()
    result = fit(_linear_recipe({**train, "schedule": {"kind": schedule}}, {"l1": STRENGTHS}), X=X, y=y)
    w, b = _coefficients(result)
    Xt, yt = _train_rows(result)
    for m, alpha in enumerate(STRENGTHS):
        lasso = Lasso(alpha=alpha, tol=1e-14, max_iter=1_000_000).fit(Xt, yt)
        assert 0 < int((lasso.coef_ == 0).sum()) < len(lasso.coef_)  # the penalty is active, not total
        np.testing.assert_array_equal(w[m] == 0.0, lasso.coef_ == 0.0, err_msg=f"{case}, l1={alpha}: zeros")
        np.testing.assert_allclose(w[m], lasso.coef_, rtol=0, atol=ATOL, err_msg=f"{case}, l1={alpha}")
        assert abs(b[m] - lasso.intercept_) < ATOL


def test_decoupled_weight_decay_with_l1_under_momentum_is_sklearn_elastic_net():
    """SGD with momentum mu and decoupled decay wd: the fixed point of `w <- S_t((1 - lr wd) w - lr g / (1 - mu))`,
    `t = lr l1 / (1 - mu)`, solves `0 in g + (1 - mu) wd w + l1 d|w|`: the elastic net
    `L + l1 ||w||_1 + (1 - mu) wd / 2 ||w||^2`, i.e. `ElasticNet(alpha = l1 + (1 - mu) wd, l1_ratio = l1 / alpha)`."""
    mu, wd = 0.9, [0.5, 2.0]
    l1 = 0.05
    X, y = _diabetes()
    recipe = _linear_recipe({"optimizer": "sgd", "lr": 0.05, "momentum": mu, "weight_decay": wd, "epochs": 500},
                            {"l1": l1})
    result = fit(recipe, X=X, y=y)
    w, b = _coefficients(result)
    Xt, yt = _train_rows(result)
    for m, decay in enumerate(wd):
        ridge_part = (1 - mu) * decay
        alpha = l1 + ridge_part
        net = ElasticNet(alpha=alpha, l1_ratio=l1 / alpha, tol=1e-14, max_iter=1_000_000).fit(Xt, yt)
        assert int((net.coef_ == 0).sum()) > 0
        np.testing.assert_array_equal(w[m] == 0.0, net.coef_ == 0.0)
        np.testing.assert_allclose(w[m], net.coef_, rtol=0, atol=ATOL)
        assert abs(b[m]) < ATOL  # decay acts on the bias too; centred data keep it at 0


def test_adamw_with_l1_reaches_its_fixed_point_condition():
    """AdamW with L1: the fixed point solves `0 in g + wd D w + l1 d|w|` with `D = sqrt(v_hat) + eps` the step's
    denominator (decoupled decay is scaled by the preconditioner, not a fixed L2 term; see docs/map.md).

    beta2 = 0.9 lets D settle within the run: 0.999 averages over ~1000 steps, longer than these 400, and
    w freezes (cosine schedule) while D still drifts (then the condition holds only to ~1e-3)."""
    wd, l1 = 0.5, 0.05
    X, y = _diabetes()
    kept = {}
    recipe = _linear_recipe({"optimizer": "adamw", "lr": 0.02, "beta2": 0.9, "weight_decay": wd, "epochs": 400,
                             "schedule": {"kind": "cosine"}}, {"l1": l1})
    result = fit(recipe, X=X, y=y, callbacks=[lambda record, trainer: kept.update(trainer=trainer)])
    optimizer = kept["trainer"].optimizer
    w, b = _coefficients(result)
    Xt, yt = _train_rows(result)
    g = Xt.T @ (Xt @ w[0] + b[0] - yt) / len(yt)
    index = optimizer.index["output.weight"]
    D = 1.0 / optimizer.l1_scale(index).double().numpy().reshape(-1)
    smooth = g + wd * D * w[0]
    nonzero = w[0] != 0
    assert 0 < int((~nonzero).sum()) < len(w[0])
    np.testing.assert_allclose(smooth[nonzero], -l1 * np.sign(w[0][nonzero]), rtol=0, atol=ATOL)
    assert np.all(np.abs(smooth[~nonzero]) <= l1)


def test_population_of_l1_strengths_and_optimizer_numbers_equals_separate_runs():
    """Member m of one population (its own l1, momentum, lr) trains as it would alone, zeros included."""
    base = {
        "data": {"name": "diabetes", "val": 0.2, "test": 0.2},
        "model": {"widths": [8], "activation": "tanh"},
        "train": {"optimizer": "sgd", "batch_size": 64, "epochs": 8, "early_stopping": NO_EARLY_STOP},
        "track": QUIET,
        "seed": 0,
    }
    members = [{"l1": 2e-2, "momentum": 0.0, "lr": 0.2}, {"l1": 1e-2, "momentum": 0.5, "lr": 0.05},
               {"l1": 3e-2, "momentum": 0.9, "lr": 0.02}]
    population = {**base, "penalty": {"l1": [c["l1"] for c in members]},
                  "train": {**base["train"], "momentum": [c["momentum"] for c in members], "lr": [c["lr"] for c in members]}}
    pop = fit(population)
    assert pop.model.members == len(members)
    pop_state = pop.model.state_dict()
    for m, c in enumerate(members):
        alone = fit({**base, "penalty": {"l1": c["l1"]}, "train": {**base["train"], "momentum": c["momentum"], "lr": c["lr"]}})
        for name, value in alone.model.state_dict().items():
            if value.dim() == 0:
                continue
            mine = pop_state[name][m]
            torch.testing.assert_close(mine, value[0], rtol=1e-5, atol=1e-7, msg=f"member {m}: {name}")
            torch.testing.assert_close(mine == 0, value[0] == 0, msg=f"member {m}: zeros of {name}")
        zeros = sum(int((r.param[m] == 0).sum()) for r in pop.model.param_roles() if r.role == "weight")
        assert zeros > 0, f"member {m} has no exact zeros"


# ------------------------------------------------------------------ the preconditioner factors


def _roles(M: int = 3) -> list[ParamRole]:
    g = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(torch.randn(M, 4, 2, generator=g, dtype=torch.float64))
    return [ParamRole("w", W, "weight", 0)]


def _hyper(M: int = 3, **values) -> dict[str, torch.Tensor]:
    base = {"momentum": [0.0] * M, "beta1": [0.9] * M, "beta2": [0.999] * M, "rho": [0.9] * M, "weight_decay": [0.0] * M}
    base.update(values)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in base.items()}


def test_sgd_factor_is_one_over_one_minus_momentum_and_exactly_one_without_momentum():
    roles = _roles()
    assert make_optimizer("sgd", roles, _hyper(), eps=1e-8, nesterov=False).l1_scale(0) == 1.0
    for nesterov in (False, True):
        sgd = make_optimizer("sgd", roles, _hyper(momentum=[0.0, 0.5, 0.9]), eps=1e-8, nesterov=nesterov)
        factor = torch.as_tensor(sgd.l1_scale(0)).flatten()
        torch.testing.assert_close(factor, torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64))
        assert factor[0].item() == 1.0  # a member without momentum keeps ISTA's exact threshold


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_adaptive_factor_is_the_reciprocal_of_torch_optims_step_denominator(name):
    """After a few steps the factor is `1 / (sqrt(v_hat) + eps)` (Adam) or `1 / ((1 - mu)(sqrt(s) + eps))`
    (RMSProp), computed from torch.optim's own state for one member."""
    M, eps, mu = 3, 1e-8, 0.5
    roles = _roles(M)
    W = roles[0].param
    hyper = _hyper(M, momentum=[mu] * M)
    ours = make_optimizer(name, roles, hyper, eps=eps, nesterov=False)
    single = torch.nn.Parameter(W.detach()[1].clone())
    theirs = (torch.optim.Adam([single], lr=0.01, eps=eps) if name == "adam"
              else torch.optim.RMSprop([single], lr=0.01, alpha=0.9, eps=eps, momentum=mu))
    target = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for _ in range(5):
        W.grad = (W.detach() - target) ** 3
        single.grad = (single.detach() - target) ** 3
        ours.step(torch.full((M,), 0.01, dtype=torch.float64))
        theirs.step()
    state = theirs.state[single]
    if name == "adam":
        denom = state["exp_avg_sq"].sqrt() / (1 - 0.999 ** 5) ** 0.5 + eps
    else:
        denom = (1 - mu) * (state["square_avg"].sqrt() + eps)
    torch.testing.assert_close(ours.l1_scale(0)[1], 1.0 / denom)


def test_momentum_of_one_with_proximal_l1_is_a_clear_error():
    X, y = _diabetes()
    recipe = _linear_recipe({"optimizer": "sgd", "lr": 0.01, "momentum": [0.9, 1.0], "epochs": 1}, {"l1": 0.01})
    with pytest.raises(RecipeError, match=r"momentum < 1, got 1\.0 for member\(s\) \[1\]"):
        fit(recipe, X=X, y=y)


def test_an_optimizer_without_a_preconditioner_refuses_the_proximal_step():
    class Plain(PopulationOptimizer):
        def update(self, i, p, g, lr):
            p.add_(g, alpha=-float(lr.flatten()[0]))

    optimizer = Plain(_roles(), _hyper())
    with pytest.raises(RecipeError, match="l1_mode 'subgradient'"):
        optimizer.l1_scales(_roles())


# ------------------------------------------------------------------ ridge, and model selection with linear models


@pytest.mark.parametrize("form", ["half", "full"])
def test_l2_linear_model_is_sklearn_ridge(form):
    """`1/2 mean r^2 + l2/2 ||w||^2` (half) or `+ l2 ||w||^2` (full) is `Ridge(alpha = n l2)` or `(2 n l2)`."""
    strengths = [0.05, 0.5]
    X, y = _diabetes()
    recipe = _linear_recipe({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 300},
                            {"l2": strengths, "l2_form": form})
    result = fit(recipe, X=X, y=y)
    w, b = _coefficients(result)
    Xt, yt = _train_rows(result)
    n = len(yt)
    for m, l2 in enumerate(strengths):
        ridge = Ridge(alpha=(1.0 if form == "half" else 2.0) * n * l2, solver="cholesky").fit(Xt, yt)
        np.testing.assert_allclose(w[m], ridge.coef_, rtol=0, atol=ATOL)
        assert abs(b[m] - ridge.intercept_) < ATOL


def _linear_diabetes(**train) -> dict:
    return {
        "data": {"name": "diabetes"},
        "model": {"kind": "linear"},
        "train": {"optimizer": "sgd", "lr": 0.1, "epochs": 3, "batch_size": 64, **train},
        "track": {"tensorboard": False, "plots": False},
        "seed": 0,
    }


def test_cross_validate_and_search_accept_a_linear_model():
    cv = cross_validate({**_linear_diabetes(), "penalty": {"l1": [0.0, 0.05]}}, folds=3)
    assert len(cv["candidates"]) == 2 and cv["folds"] == 3
    found = search(_linear_diabetes(), grid=["penalty.l1=0,0.05"], folds=3, refit=False)
    assert len(found["candidates"]) == 2
