"""Hard constraints (C5) against their definitions: max-norm, non-negativity, connectivity masks and tied
weights, each as a projection and through training; populations with a per-member max-norm c."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tamenet.api import fit
from tamenet.config import ConstraintsConfig, MaskConfig, Recipe, RecipeError, TieConfig, parse
from tamenet.constraints import banded_mask, layer_mask, max_norm_, resolve_constraints
from tamenet.models import MLP, Wrapped
from tamenet.select.search import split_grid

QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
NO_EARLY_STOP = {"patience": None, "restore_best": False}
MOONS = {
    "data": {"name": "moons", "n_samples": 200, "noise": 0.3},
    "model": {"widths": [16, 16], "activation": "relu"},
    "train": {"optimizer": "adam", "lr": 0.05, "batch_size": 32, "epochs": 4, "early_stopping": NO_EARLY_STOP},
    "track": QUIET,
    "seed": 0,
}


def _recipe(**sections) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in MOONS.items()}
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


@pytest.fixture(scope="module")
def free():
    """The recipe trained without constraints: what each constraint is compared against."""
    return fit(_recipe())


def _unit_norms_mlp(w: torch.Tensor) -> torch.Tensor:
    """[M, in, out]: unit j's incoming weights are the column w[m, :, j]."""
    return torch.stack([torch.stack([w[m, :, j].norm() for j in range(w.shape[2])]) for m in range(w.shape[0])])


# ------------------------------------------------------------------ max-norm


def test_max_norm_rescales_units_above_c_to_c_and_leaves_the_others_bit_for_bit():
    model = MLP(6, 2, widths=[5], seeds=[0, 1, 2])
    role = model.param_roles()[0]
    with torch.no_grad():
        role.param.mul_(torch.linspace(0.2, 3.0, 5))  # unit norms from small to large
    before = role.param.detach().clone()
    c = torch.tensor([1.0, 0.0, 2.5])  # member 1 unconstrained
    max_norm_(role, c)
    after = role.param.detach()
    norms_before, norms_after = _unit_norms_mlp(before), _unit_norms_mlp(after)
    for m in range(3):
        for j in range(5):
            if c[m] > 0 and norms_before[m, j] > c[m]:
                assert abs(float(norms_after[m, j]) - float(c[m])) < 1e-6 * float(c[m])
                cosine = torch.nn.functional.cosine_similarity(after[m, :, j], before[m, :, j], dim=0)
                assert float(cosine) > 1 - 1e-6  # rescaled, same direction
            else:
                assert torch.equal(after[m, :, j], before[m, :, j])
    assert bool((norms_before[0] > 1.0).any()) and bool((norms_before[0] <= 1.0).any())  # both cases occur


def test_max_norm_of_a_user_module_acts_on_pytorchs_rows():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.mul_(10.0)
    role = Wrapped(layer).param_roles()[0]
    max_norm_(role, torch.tensor([0.5]))
    torch.testing.assert_close(layer.weight.norm(dim=1), torch.full((3,), 0.5))


def test_training_with_max_norm_keeps_every_unit_norm_at_most_c_where_free_training_exceeds_it(free):
    c = 0.8
    bounded = fit(_recipe(constraints={"max_norm": c}))
    weights = [r for r in bounded.model.param_roles() if r.role == "weight"]
    free_max = max(float(_unit_norms_mlp(r.param.detach()).max()) for r in free.model.param_roles() if r.role == "weight")
    assert free_max > 2 * c  # the constraint has something to do
    for r in weights:
        norms = _unit_norms_mlp(r.param.detach())
        assert float(norms.max()) <= c * (1 + 1e-6), r.name
        assert float(norms.max()) > 0.99 * c  # active, not merely vacuous


def test_max_norm_layers_limits_the_constraint_to_the_named_layers():
    result = fit(_recipe(constraints={"max_norm": 0.5, "max_norm_layers": ["hidden.1.weight"]}))
    norms = {r.name: float(_unit_norms_mlp(r.param.detach()).max()) for r in result.model.param_roles() if r.role == "weight"}
    assert norms["hidden.1.weight"] <= 0.5 * (1 + 1e-6)
    assert norms["hidden.0.weight"] > 0.5 and norms["output.weight"] > 0.5


def test_population_with_a_different_max_norm_per_member_equals_separate_runs():
    values = [0.0, 0.6, 1.2]
    sharing = {"soft_sharing": [0.0, 0.1, 0.01], "sharing_groups": [{"layer": "hidden.0.weight", "units": [0, 1, 2, 3]}]}
    pop = fit(_recipe(constraints={"max_norm": values}, penalty=sharing))
    assert pop.model.members == 3
    for m, c in enumerate(values):
        alone = fit(_recipe(constraints={"max_norm": c}, penalty={**sharing, "soft_sharing": sharing["soft_sharing"][m]}))
        mine = [(r["train_loss"], r["val_loss"], r["penalty"]) for r in pop.history if r["member"] == m]
        theirs = [(r["train_loss"], r["val_loss"], r["penalty"]) for r in alone.history]
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6, err_msg=f"member {m}")
        for name, value in alone.model.state_dict().items():
            if value.dim() >= 1:
                torch.testing.assert_close(pop.model.state_dict()[name][m], value[0], rtol=1e-4, atol=1e-6)
    penalties = [r["penalty"] for r in pop.history if r["epoch"] == 1]
    assert penalties[0] == 0.0 and penalties[1] > 0.0  # soft sharing reported in the penalty column


def test_max_norm_and_soft_sharing_are_numeric_grid_keys():
    recipe = parse(Recipe, _recipe())
    structures, numbers = split_grid(recipe, {"constraints.max_norm": [0, 2, 3], "penalty.soft_sharing": [0, 1e-3]})
    assert structures == [{}] and len(numbers) == 6


# ------------------------------------------------------------------ non-negative


def test_non_negative_weights_stay_non_negative_through_training_and_still_learn(free):
    result = fit(_recipe(constraints={"non_negative": True}))
    for r in result.model.param_roles():
        if r.role == "weight":
            assert float(r.param.detach().min()) >= 0.0 and float(r.param.detach().max()) > 0.0, r.name
    biases = [r for r in result.model.param_roles() if r.role == "bias"]
    assert any(float(r.param.detach().min()) < 0 for r in biases)  # biases are not weights
    assert any(float(r.param.detach().min()) < 0 for r in free.model.param_roles() if r.role == "weight")
    assert result.summary["val"]["accuracy"] > 0.6


def test_non_negative_on_named_layers_only():
    result = fit(_recipe(constraints={"non_negative": ["output.weight", "output.bias"]}))
    roles = {r.name: r.param.detach() for r in result.model.param_roles()}
    assert float(roles["output.weight"].min()) >= 0 and float(roles["output.bias"].min()) >= 0
    assert float(roles["hidden.0.weight"].min()) < 0


# ------------------------------------------------------------------ masks


def _band_by_definition(n_in: int, n_out: int, k: int) -> torch.Tensor:
    mask = torch.zeros(n_in, n_out, dtype=torch.bool)
    for j in range(n_out):
        centre = (j + 0.5) * n_in / n_out - 0.5
        for i in range(n_in):
            mask[i, j] = centre - k - 0.5 <= i < centre + k + 0.5
    return mask


@pytest.mark.parametrize("n_in,n_out,k", [(7, 7, 0), (7, 7, 2), (12, 4, 1), (4, 12, 1), (10, 3, 2), (5, 9, 0)])
def test_banded_mask_follows_its_definition(n_in, n_out, k):
    mask = banded_mask(n_in, n_out, k)
    assert torch.equal(mask, _band_by_definition(n_in, n_out, k))
    assert int(mask.sum(0).max()) == 2 * k + 1  # at most 2k + 1 inputs, exactly that away from the edges
    assert bool((mask.sum(0) >= 1).all())  # no unit is cut off
    if n_in == n_out:
        i, j = torch.meshgrid(torch.arange(n_in), torch.arange(n_out), indexing="ij")
        assert torch.equal(mask, (i - j).abs() <= k)


def test_masked_weights_stay_exactly_zero_through_adam_with_weight_decay_penalties_and_clipping(tmp_path):
    rng = np.random.default_rng(0)
    user = rng.integers(0, 2, size=(16, 16)).astype(np.float32)  # hidden.1.weight is stored [in, out]
    np.save(tmp_path / "mask.npy", user)
    recipe = _recipe(
        constraints={"masks": [{"layer": "hidden.0.weight", "band": 0}, {"layer": "hidden.1.weight", "file": str(tmp_path / "mask.npy")}]},
        penalty={"l2": 1e-3, "soft_sharing": 0.1, "sharing_groups": [{"layer": "hidden.1.weight", "units": [0, 1, 2]}]},
        train={"weight_decay": 0.01, "clip": {"by": "norm", "max": 1.0}},
    )
    result = fit(recipe)
    roles = {r.name: r.param.detach() for r in result.model.param_roles()}
    band = banded_mask(2, 16, 0)
    before = fit({**recipe, "train": {**recipe["train"], "epochs": 1}})
    for name, mask in [("hidden.0.weight", band), ("hidden.1.weight", torch.from_numpy(user).bool())]:
        w = roles[name][0]
        assert bool((w[~mask] == 0).all()), name
        assert bool((w[mask] != 0).all()), name  # the connections that exist are trained
        trained = before.model.state_dict()[name][0]
        assert not torch.equal(trained[mask], w[mask])


def test_masked_gradients_leave_no_optimizer_state_behind():
    model = MLP(4, 2, widths=[6], seeds=[0])
    cons = resolve_constraints(ConstraintsConfig(masks=[MaskConfig(layer="hidden.0.weight", band=1)]), model.param_roles())
    cons.project_()
    w = model.hidden[0].weight
    model(torch.randn(8, 4)).square().sum().backward()
    assert bool((w.grad[0][~banded_mask(4, 6, 1)] != 0).any())  # the loss does pull on masked weights
    cons.mask_gradients_()
    assert bool((w.grad[0][~banded_mask(4, 6, 1)] == 0).all())


def test_band_on_a_user_modules_out_in_layout_is_the_transpose():
    layer = nn.Linear(6, 3)
    role = Wrapped(layer).param_roles()[0]
    assert torch.equal(layer_mask(role, band=1).bool(), banded_mask(6, 3, 1).T)


def test_a_mask_file_of_the_wrong_shape_or_values_is_refused(tmp_path):
    model = MLP(4, 2, widths=[6], seeds=[0])
    np.save(tmp_path / "wrong.npy", np.ones((6, 4)))
    np.save(tmp_path / "values.npy", np.full((4, 6), 0.5))
    cfg = lambda f: ConstraintsConfig(masks=[MaskConfig(layer="hidden.0.weight", file=str(tmp_path / f))])  # noqa: E731
    with pytest.raises(RecipeError, match=r"masks\[0\]\.file: expected an array of shape \(4, 6\) \(\[in, out\].*got \(6, 4\)"):
        resolve_constraints(cfg("wrong.npy"), model.param_roles())
    with pytest.raises(RecipeError, match="expected only 0 and 1"):
        resolve_constraints(cfg("values.npy"), model.param_roles())
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        resolve_constraints(cfg("missing.npy"), model.param_roles())


# ------------------------------------------------------------------ tied weights


class _Net(nn.Module):
    """x -> enc -> tanh -> mid -> tanh -> mid2 -> tanh -> dec -> tanh -> head. `shared`: mid2 IS mid and dec
    uses enc's transposed weight (literally one parameter each); otherwise separate parameters to be tied."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.shared = shared
        self.enc, self.mid, self.mid2 = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.dec, self.head = nn.Linear(6, 4), nn.Linear(4, 1)
        if shared:
            self.mid2.weight = self.mid.weight
            del self.dec.weight

    def forward(self, x):
        h = torch.tanh(self.enc(x))
        h = torch.tanh(self.mid2(torch.tanh(self.mid(h))))
        dec_w = self.enc.weight.t() if self.shared else self.dec.weight
        return self.head(torch.tanh(nn.functional.linear(h, dec_w, self.dec.bias)))


def test_tied_weights_train_exactly_like_one_shared_parameter():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.tanh(X @ rng.normal(size=4)) + 0.1 * rng.normal(size=120)
    recipe = {
        "data": {"task": "regression", "test": 0.0, "val": 0.25},
        "penalty": {"l2": 1e-2},
        "train": {"optimizer": "adam", "lr": 0.02, "weight_decay": 0.01, "batch_size": 16, "epochs": 5,
                  "clip": {"by": "norm", "max": 0.5}, "early_stopping": NO_EARLY_STOP},
        "track": QUIET,
    }
    shared = fit(recipe, X=X, y=y, module=_Net(shared=True))
    ties = {"tied": [{"layers": ["mid.weight", "mid2.weight"]}, {"layers": ["enc.weight", "dec.weight"], "transpose": True}]}
    tied = fit({**recipe, "constraints": ties}, X=X, y=y, module=_Net(shared=False))
    a, b = shared.model.module, tied.model.module
    assert torch.equal(b.mid.weight, b.mid2.weight) and torch.equal(b.dec.weight, b.enc.weight.t())
    for name in ("enc.weight", "enc.bias", "mid.weight", "mid.bias", "mid2.bias", "dec.bias", "head.weight"):
        torch.testing.assert_close(b.get_parameter(name), a.get_parameter(name), rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.allclose(b.enc.weight, _Net(shared=False).enc.weight)  # it did train
    np.testing.assert_allclose([r["penalty"] for r in tied.history], [r["penalty"] for r in shared.history], rtol=1e-5)


def test_tied_gradient_is_the_sum_of_the_copies_gradients():
    model = MLP(3, 2, widths=[4, 4, 4], seeds=[0, 1])
    cons = resolve_constraints(ConstraintsConfig(tied=[TieConfig(layers=["hidden.1.weight", "hidden.2.weight"])]), model.param_roles())
    cons.project_()
    assert torch.equal(model.hidden[1].weight, model.hidden[2].weight)
    model(torch.randn(5, 3)).square().sum().backward()
    g1, g2 = model.hidden[1].weight.grad.clone(), model.hidden[2].weight.grad.clone()
    cons.tie_gradients_()
    assert torch.equal(model.hidden[1].weight.grad, g1 + g2) and model.hidden[2].weight.grad is None


@pytest.mark.parametrize(
    "cfg,message",
    [
        (ConstraintsConfig(tied=[TieConfig(layers=["hidden.0.weight", "hidden.1.weight"])]),
         r"tied layers need the same shape: 'hidden\.0\.weight' has \(1, 3, 4\), 'hidden\.1\.weight' has \(1, 4, 4\)"),
        (ConstraintsConfig(tied=[TieConfig(layers=["hidden.1.weight", "output.weight"], transpose=True)]),
         r"with transpose, 'output\.weight' must have the transposed shape"),
        (ConstraintsConfig(tied=[TieConfig(layers=["hidden.1.weight"])]), r"at least two different layer names"),
        (ConstraintsConfig(tied=[TieConfig(layers=["hidden.1.weight", "hiden.2.weight"])]),
         r"unknown layer in constraints\.tied\[0\]\.layers 'hiden\.2\.weight'; did you mean 'hidden\.2\.weight'"),
        (ConstraintsConfig(max_norm_layers=["hidden.2.weight"], tied=[TieConfig(layers=["hidden.1.weight", "hidden.2.weight"])]),
         r"max_norm_layers: 'hidden\.2\.weight' is tied to 'hidden\.1\.weight' and takes its value"),
        (ConstraintsConfig(max_norm_layers=["hidden.0.bias"]), r"unknown layer in constraints\.max_norm_layers 'hidden\.0\.bias'.*valid: hidden\.0\.weight"),
        (ConstraintsConfig(non_negative="output.weight"), r"constraints\.non_negative .*expected a list of layer names, got 'output\.weight'"),
        (ConstraintsConfig(masks=[MaskConfig(layer="output.weight")]), r"masks\[0\]: expected exactly one of 'band'"),
        (ConstraintsConfig(masks=[MaskConfig(layer="output.weight", band=1)] * 2), r"masks\[1\]\.layer: 'output\.weight' already has a mask"),
    ],
)
def test_constraints_that_cannot_be_used_are_refused_by_name(cfg, message):
    model = MLP(3, 2, widths=[4, 4, 4], seeds=[0])
    with pytest.raises(RecipeError, match=message):
        resolve_constraints(cfg, model.param_roles())


def test_constraints_section_rejects_unknown_keys_and_bad_values():
    with pytest.raises(RecipeError, match=r"unknown recipe key 'constraints\.maxnorm'; did you mean 'max_norm'"):
        parse(Recipe, {"constraints": {"maxnorm": 2}})
    with pytest.raises(RecipeError, match=r"constraints\.max_norm: expected a value >= 0.0, got -1.0"):
        parse(Recipe, {"constraints": {"max_norm": [1, -1]}})
    with pytest.raises(RecipeError, match=r"constraints\.masks\[0\]\.band: expected a value >= 0"):
        parse(Recipe, {"constraints": {"masks": [{"layer": "output.weight", "band": -1}]}})


def test_an_unknown_layer_name_is_refused_before_the_run_directory_is_written(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown layer in constraints\.non_negative 'hidden\.7\.weight'"):
        fit(_recipe(constraints={"non_negative": ["hidden.7.weight"]}), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
