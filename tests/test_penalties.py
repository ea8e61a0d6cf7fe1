"""Behaviour of the weight penalties: L2 and L1 values and gradients per member, which parameters they
act on, per-layer multipliers, the L1 proximal step, the sparsity report, and soft weight sharing
against its pairwise definition."""

from __future__ import annotations

import pytest
import torch

from tamenet.config import PenaltyConfig, RecipeError, SharingGroup
from tamenet.models import MLP
from tamenet.penalties import (
    add_soft_sharing_gradients_, l1_penalty, l1_proximal_, l2_penalty, penalized, sharing_sets, soft_sharing_penalty,
    sparsity,
)

M = 3
STRENGTH = torch.tensor([0.1, 0.5, 2.0])


def _model(seed=0):
    model = MLP(5, 2, widths=[4, 3], seeds=[0, 1, 2], norm="layer")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for r in model.param_roles():  # biases and norm parameters away from their zero / one start
            r.param.copy_(torch.randn(r.param.shape, generator=g))
    return model


def _params(model, role):
    return [r.param for r in model.param_roles() if r.role == role]


def _sq(params, m):
    return sum(p[m].double().square().sum() for p in params)


def test_l2_half_is_half_lambda_sum_of_squares_with_gradient_lambda_w():
    model = _model()
    targets = penalized(model.param_roles(), PenaltyConfig())
    value = l2_penalty(targets, STRENGTH, form="half")
    weights = _params(model, "weight")
    assert len(weights) == 3
    expected = torch.stack([STRENGTH[m].double() / 2 * _sq(weights, m) for m in range(M)])
    torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=0)
    value.sum().backward()
    for w in weights:
        torch.testing.assert_close(w.grad, STRENGTH.view(-1, 1, 1) * w.detach(), rtol=1e-6, atol=1e-7)
    for p in _params(model, "bias") + _params(model, "norm"):
        assert p.grad is None  # excluded by default


def test_l2_full_doubles_the_half_form():
    model = _model()
    targets = penalized(model.param_roles(), PenaltyConfig())
    half = l2_penalty(targets, STRENGTH, form="half")
    full = l2_penalty(targets, STRENGTH, form="full")
    torch.testing.assert_close(full, 2 * half, rtol=1e-6, atol=0)
    full.sum().backward()
    for w in _params(model, "weight"):
        torch.testing.assert_close(w.grad, 2 * STRENGTH.view(-1, 1, 1) * w.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bias,norm", [(False, False), (True, False), (False, True), (True, True)])
def test_biases_and_norm_parameters_are_penalized_only_when_asked(bias, norm):
    model = _model()
    cfg = PenaltyConfig(penalize_bias=bias, penalize_norm=norm)
    roles = {r.role for r, _ in penalized(model.param_roles(), cfg)}
    assert roles == {"weight"} | ({"bias"} if bias else set()) | ({"norm"} if norm else set())
    value = l2_penalty(penalized(model.param_roles(), cfg), STRENGTH)
    included = _params(model, "weight") + (_params(model, "bias") if bias else []) + (_params(model, "norm") if norm else [])
    expected = torch.stack([STRENGTH[m].double() / 2 * _sq(included, m) for m in range(M)])
    torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=0)


def test_layer_scale_multiplies_each_weight_layer():
    model = _model()
    scale = [0.5, 1.0, 4.0]
    value = l2_penalty(penalized(model.param_roles(), PenaltyConfig(layer_scale=scale)), STRENGTH)
    weights = _params(model, "weight")  # hidden.0, hidden.1, output: input first
    expected = torch.stack(
        [STRENGTH[m].double() / 2 * sum(s * w[m].double().square().sum() for s, w in zip(scale, weights)) for m in range(M)]
    )
    torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=0)
    value.sum().backward()
    for s, w in zip(scale, weights):
        torch.testing.assert_close(w.grad, s * STRENGTH.view(-1, 1, 1) * w.detach(), rtol=1e-6, atol=1e-7)


def test_layer_scale_also_scales_a_layers_bias_when_biases_are_penalized():
    model = _model()
    scale = [0.5, 1.0, 4.0]
    cfg = PenaltyConfig(layer_scale=scale, penalize_bias=True)
    value = l2_penalty(penalized(model.param_roles(), cfg), STRENGTH)
    layers = [*model.hidden, model.output]
    expected = torch.stack(
        [
            STRENGTH[m].double() / 2 * sum(s * (l.weight[m].double().square().sum() + l.bias[m].double().square().sum())
                                           for s, l in zip(scale, layers))
            for m in range(M)
        ]
    )
    torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scale", [[1.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
def test_layer_scale_of_wrong_length_names_the_expected_count(scale):
    model = _model()
    with pytest.raises(RecipeError, match=r"penalty\.layer_scale: expected 3 multipliers"):
        penalized(model.param_roles(), PenaltyConfig(layer_scale=scale))


def test_l1_penalty_is_lambda_sum_of_absolute_values_with_sign_gradient():
    model = _model()
    targets = penalized(model.param_roles(), PenaltyConfig())
    value = l1_penalty(targets, STRENGTH)
    weights = _params(model, "weight")
    expected = torch.stack([STRENGTH[m].double() * sum(w[m].double().abs().sum() for w in weights) for m in range(M)])
    torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=0)
    value.sum().backward()
    for w in weights:
        torch.testing.assert_close(w.grad, STRENGTH.view(-1, 1, 1) * torch.sign(w.detach()))


def test_l1_proximal_is_soft_thresholding_with_exact_zeros():
    model = _model()
    scale = [1.0, 2.0, 0.5]
    targets = penalized(model.param_roles(), PenaltyConfig(layer_scale=scale))
    threshold = torch.tensor([0.2, 0.5, 1.0])
    weights = _params(model, "weight")
    before = [w.detach().clone() for w in weights]
    biases_before = [b.detach().clone() for b in _params(model, "bias")]
    l1_proximal_(targets, threshold)
    for s, w, w0 in zip(scale, weights, before):
        for m in range(M):
            t = threshold[m].item() * s
            expected = torch.sign(w0[m]) * torch.clamp(w0[m].abs() - t, min=0.0)
            torch.testing.assert_close(w[m].detach(), expected, rtol=1e-6, atol=1e-7)
            inside = w0[m].abs() <= t
            assert torch.all(w[m][inside] == 0.0)  # exact zeros, not tiny numbers
            assert torch.all(w[m][~inside] != 0.0)
    assert sum(int((w == 0).sum()) for w in weights) > 0
    for b, b0 in zip(_params(model, "bias"), biases_before):
        assert torch.equal(b, b0)  # biases are not penalized by default


def test_sparsity_reports_the_share_of_exact_zeros():
    model = _model()
    targets = penalized(model.param_roles(), PenaltyConfig())
    l1_proximal_(targets, torch.tensor([0.3, 0.6, 1.2]))
    with torch.no_grad():
        model.hidden[0].bias.zero_()  # biases do not count
    report = sparsity(model.param_roles())
    names = {"hidden.0.weight", "hidden.1.weight", "output.weight"}
    assert set(report) == names | {"all_weights"}
    layers = {"hidden.0.weight": model.hidden[0], "hidden.1.weight": model.hidden[1], "output.weight": model.output}
    zeros = total = 0
    for name, layer in layers.items():
        w = layer.weight
        assert report[name] == pytest.approx((w == 0).double().mean().item())
        zeros, total = zeros + int((w == 0).sum()), total + w.numel()
    assert report["all_weights"] == pytest.approx(zeros / total)
    assert 0.0 < report["all_weights"] < 1.0


def test_sparsity_of_a_dense_model_is_zero():
    report = sparsity(_model().param_roles())
    assert all(v == 0.0 for v in report.values())


# ------------------------------------------------------------------ soft weight sharing (C4)


def _pairwise(vectors: list[torch.Tensor]) -> torch.Tensor:
    """The definition: sum over pairs i < j of ||w_i - w_j||^2, for one member."""
    total = torch.zeros((), dtype=vectors[0].dtype)
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            total = total + (vectors[i] - vectors[j]).square().sum()
    return total


def _sharing_model():
    model = MLP(5, 3, widths=[3, 3, 3], seeds=[0, 1, 2]).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for r in model.param_roles():
            r.param.copy_(torch.randn(r.param.shape, generator=g, dtype=torch.float64))
    return model


GROUPS = [
    SharingGroup(layers=["hidden.1.weight", "hidden.2.weight", "output.weight"]),
    SharingGroup(layer="hidden.0.weight", units=[2, 0]),
]


def test_soft_sharing_equals_the_pairwise_double_loop_in_value_and_gradient_per_member():
    model = _sharing_model()
    sets = sharing_sets(GROUPS, model.param_roles())
    strength = STRENGTH.double()
    value = soft_sharing_penalty(sets, strength)

    def pairwise_total():
        whole = [model.hidden[1].weight, model.hidden[2].weight, model.output.weight]
        units = model.hidden[0].weight  # [M, in, out]: unit j's incoming weights are the column [:, j]
        return torch.stack([
            strength[m] * (_pairwise([w[m] for w in whole]) + _pairwise([units[m][:, 2], units[m][:, 0]]))
            for m in range(M)
        ])

    expected = pairwise_total()
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    assert bool((value > 0).all())
    expected.sum().backward()  # autograd of the explicit double loop
    reference = {r.name: torch.zeros_like(r.param) if r.param.grad is None else r.param.grad.clone() for r in model.param_roles()}
    for r in model.param_roles():
        r.param.grad = torch.zeros_like(r.param)
    add_soft_sharing_gradients_(sets, strength)
    for r in model.param_roles():
        torch.testing.assert_close(r.param.grad, reference[r.name], rtol=1e-12, atol=1e-12, msg=r.name)
    assert bool((model.hidden[0].weight.grad[:, :, 1] == 0).all())  # the unit outside the group


def test_soft_sharing_of_units_follows_a_user_modules_out_in_layout():
    from tamenet.models import Wrapped

    layer = torch.nn.Linear(4, 5).double()
    roles = Wrapped(layer).param_roles()  # weight [out, in]: unit j's incoming weights are the row [j]
    sets = sharing_sets([SharingGroup(layer="weight", units=[1, 3, 4])], roles)
    strength = torch.tensor([0.7], dtype=torch.float64)
    expected = strength * _pairwise([layer.weight[1], layer.weight[3], layer.weight[4]])
    torch.testing.assert_close(soft_sharing_penalty(sets, strength), expected.view(1), rtol=1e-12, atol=0)
    expected.sum().backward()
    reference = layer.weight.grad.clone()
    layer.weight.grad = torch.zeros_like(layer.weight)
    add_soft_sharing_gradients_(sets, strength)
    torch.testing.assert_close(layer.weight.grad, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "group,message",
    [
        (SharingGroup(layers=["hidden.0.weight", "hidden.9.weight"]), r"unknown layer in penalty\.sharing_groups\[0\]\.layers 'hidden\.9\.weight'.*valid: hidden\.0\.weight"),
        (SharingGroup(layers=["hidden.0.weight", "hidden.1.weight"]), r"need equal shapes, got 'hidden\.0\.weight' \(3, 5, 3\), 'hidden\.1\.weight' \(3, 3, 3\)"),
        (SharingGroup(layers=["hidden.1.weight"]), r"at least two different layer names"),
        (SharingGroup(layer="hidden.0.weight", units=[0, 3]), r"unit indices in \[0, 3\) of 'hidden\.0\.weight', got \[0, 3\]"),
        (SharingGroup(layer="hidden.0.weight", units=[1, 1]), r"at least two different unit indices"),
        (SharingGroup(layer="hidden.0.bias", units=[0, 1]), r"unknown layer in penalty\.sharing_groups\[0\]\.layer 'hidden\.0\.bias'"),
        (SharingGroup(layers=["a", "b"], layer="hidden.0.weight"), r"either 'layers' \(whole tensors\) or 'layer' with 'units'"),
    ],
)
def test_sharing_groups_that_cannot_be_used_are_refused_by_name(group, message):
    model = _sharing_model()
    with pytest.raises(RecipeError, match=message):
        sharing_sets([group], model.param_roles())
