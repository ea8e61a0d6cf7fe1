"""gradient_check: central differences agree with autograd on tamenet's layers and on plain modules,
match the closed-form gradient of a linear model, and expose a custom backward that is off by 2."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tamenet.gradcheck import gradient_check
from tamenet.models import MLP

F, K, B = 5, 3, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(task: str, *, members: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, F, generator=g) if members is None else torch.randn(members, B, F, generator=g)
    if task == "classification":
        y = torch.randint(0, K, (B,), generator=g)
    else:
        y = torch.randn(B, generator=g) if members is None else torch.randn(members, B, generator=g)
    return x, y


@pytest.mark.parametrize(
    "options",
    [
        {"activation": "relu"},
        {"activation": "tanh"},
        {"activation": "relu", "norm": "batch"},
        {"activation": "tanh", "norm": "batch", "norm_position": "after"},
        {"activation": "relu", "norm": "layer", "residual": True},
    ],
    ids=["relu", "tanh", "batchnorm", "batchnorm-after", "layernorm-residual"],
)
def test_gradient_check_passes_on_population_mlps(options):
    model = MLP(F, K, widths=[8, 8], seeds=[1, 2, 3], dropout=[[0.0] * 3, [0.5] * 3, [0.5] * 3], **options)
    x, y = _data("classification")
    if options.get("norm") == "batch":  # non-trivial running statistics for the eval-mode check
        with torch.no_grad():
            for _ in range(3):
                model(3.0 * x + 1.0)
    report = gradient_check(model, x, y, task="classification")
    assert report.ok, str(report)
    assert report.max_rel_error < 1e-5
    names = {name for name, p in model.named_parameters()}
    assert set(report.per_parameter) == names
    assert max(report.per_parameter.values()) == report.max_rel_error
    # small tensors are checked entry by entry, large ones on `samples` entries
    assert report.checked["output.bias"] == 3 * K and report.checked["hidden.0.weight"] == 20
    # the user's model keeps its dtype and mode (dropout stays configured; the check ran a copy in eval mode)
    assert model.training and next(model.parameters()).dtype == torch.float32


def test_gradient_check_passes_on_a_wrapped_sequential_and_keeps_the_users_names():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(F, 7), nn.Tanh(), nn.Linear(7, 1))
    x, y = _data("regression")
    report = gradient_check(model, x, y, task="regression", samples=10)
    assert report.ok, str(report)
    assert set(report.per_parameter) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert report.checked == {"0.weight": 10, "0.bias": 7, "2.weight": 7, "2.bias": 1}


def test_gradient_check_passes_on_a_plain_conv_net_with_image_shaped_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, K))
    x = torch.randn(B, 2, 6, 6)
    y = torch.randint(0, K, (B,))
    report = gradient_check(model, x, y, task="classification", samples=8)
    assert report.ok, str(report)
    assert report.checked["0.weight"] == 8 and report.checked["0.bias"] == 3


def test_numeric_gradients_equal_the_closed_form_gradient_of_a_linear_regression():
    # L = 1/2 mean_b (w.x_b + c - y_b)^2  =>  dL/dw = mean_b r_b x_b, dL/dc = mean_b r_b, r = w.x + c - y
    torch.manual_seed(0)
    layer = nn.Linear(F, 1).double()
    x, y = _data("regression")
    report = gradient_check(layer, x, y, task="regression")
    with torch.no_grad():
        r = (x.double() @ layer.weight[0] + layer.bias[0]) - y.double()
        expected = {"weight": (r[:, None] * x.double()).mean(0), "bias": r.mean().reshape(1)}
    assert len(report.entries) == F + 1
    for entry in report.entries:
        want = expected[entry.name][entry.index[-1]].item()
        assert entry.numeric == pytest.approx(want, rel=1e-8, abs=1e-12)
        assert entry.analytic == pytest.approx(want, rel=1e-12, abs=1e-15)


class _TanhDoubledBackward(torch.autograd.Function):
    """tanh whose backward returns twice the true derivative 1 - tanh(z)^2."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(z)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return 2.0 * grad * (1.0 - out * out)


class _BadTanh(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _TanhDoubledBackward.apply(z)


def test_gradient_check_fails_on_a_custom_backward_that_is_off_by_two():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(F, 7), _BadTanh(), nn.Linear(7, K))
    x, y = _data("classification")
    report = gradient_check(model, x, y, task="classification")
    assert not report.ok
    # below the bad layer autograd doubles the true gradient: |2g - g| / (2|g| + |g|) = 1/3
    assert report.max_rel_error == pytest.approx(1 / 3, rel=1e-4)
    assert report.per_parameter["0.weight"] == pytest.approx(1 / 3, rel=1e-4)
    assert report.per_parameter["2.weight"] < 1e-6  # the layer above it is still right
    assert report.worst.name in {"0.weight", "0.bias"}
    assert report.worst.analytic == pytest.approx(2 * report.worst.numeric, rel=1e-4)
    assert "FAILED" in str(report) and "0.weight" in str(report)


def test_member_selection_samples_only_the_chosen_members_and_per_member_inputs_work():
    model = MLP(F, 1, widths=[6], seeds=[4, 5, 6], activation="tanh")
    x, y = _data("regression", members=3)
    report = gradient_check(model, x, y, task="regression", members=[2], samples=5, seed=3)
    assert report.ok, str(report)
    assert {e.index[0] for e in report.entries} == {2}
    assert all(e.analytic != 0.0 for e in report.entries)  # entries of member 2 all feel member 2's loss


def test_user_mistakes_raise_with_expected_and_received():
    model = MLP(F, K, widths=[4], seeds=[0, 1])
    x, y = _data("classification")
    with pytest.raises(ValueError, match=r"task: expected one of"):
        gradient_check(model, x, y, task="ranking")
    with pytest.raises(ValueError, match=r"members: expected distinct indices in \[0, 2\)"):
        gradient_check(model, x, y, task="classification", members=[2])
    with pytest.raises(TypeError, match=r"members: expected a list"):
        gradient_check(model, x, y, task="classification", members=1)
    with pytest.raises(ValueError, match=r"eps: expected a positive"):
        gradient_check(model, x, y, task="classification", eps=0.0)
    with pytest.raises(TypeError, match=r"integer class indices"):
        gradient_check(model, x, y.float(), task="classification")
    with pytest.raises(TypeError, match=r"expected a tamenet Population or a torch.nn.Module"):
        gradient_check(lambda t: t, x, y, task="classification")
