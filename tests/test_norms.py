"""Population normalization layers against their PyTorch references, member by member: BatchNorm
and LayerNorm on convolutional activations, InstanceNorm, GroupNorm, and SwitchNorm's mix."""

from __future__ import annotations

import pytest
import torch

from tamenet.models import MLP
from tamenet.nn import NORMS, BatchNorm, GroupNorm, InstanceNorm, LayerNorm, SwitchNorm, default_groups

MEMBERS, BATCH, CHANNELS = 3, 5, 4


def _set_affine(module, seed: int) -> None:
    """Different gamma (in [0.5, 1.5)) and beta per member and channel."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.weight.copy_(torch.rand(module.members, module.channels, generator=g) + 0.5)
        module.bias.copy_(torch.randn(module.members, module.channels, generator=g))


def _refs(module, make):
    """One torch module per member, its affine parameters copied from member m."""
    refs = []
    for m in range(module.members):
        ref = make()
        with torch.no_grad():
            ref.weight.copy_(module.weight[m].view(ref.weight.shape) if ref.weight.dim() == 1 else
                             module.weight[m].view(-1, *([1] * (ref.weight.dim() - 1))).expand_as(ref.weight))
            ref.bias.copy_(module.bias[m].view(ref.bias.shape) if ref.bias.dim() == 1 else
                           module.bias[m].view(-1, *([1] * (ref.bias.dim() - 1))).expand_as(ref.bias))
        refs.append(ref)
    return refs


def _inputs(step: int, spatial: tuple[int, ...] = (6, 5)) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + step)
    scale = torch.tensor([1.0, 2.0, 0.5]).view(MEMBERS, *([1] * (2 + len(spatial))))
    return torch.randn(MEMBERS, BATCH, CHANNELS, *spatial, generator=g) * scale * (1 + step) + step


def _assert_members_match(module, refs, x: torch.Tensor, *, atol: float = 1e-5) -> None:
    out = module(x)
    assert out.shape == x.shape
    for m, ref in enumerate(refs):
        torch.testing.assert_close(out[m], ref(x[m]), rtol=1e-5, atol=atol)


def _train_then_eval(module, refs, spatial: tuple[int, ...], *, atol: float = 1e-5) -> None:
    module.train()
    for ref in refs:
        ref.train()
    for step in range(4):
        _assert_members_match(module, refs, _inputs(step, spatial), atol=atol)
    module.eval()
    for ref in refs:
        ref.eval()
    _assert_members_match(module, refs, _inputs(9, spatial), atol=atol)


# ---------------------------------------------------------------- BatchNorm, LayerNorm on [M, B, C, *spatial]


@pytest.mark.parametrize(
    "spatial, torch_cls", [((6, 5), torch.nn.BatchNorm2d), ((7,), torch.nn.BatchNorm1d)], ids=["2d", "1d"]
)
def test_batchnorm_on_spatial_inputs_matches_torch_per_member_with_running_stats(spatial, torch_cls):
    norm = BatchNorm(MEMBERS, CHANNELS, momentum=0.2)
    _set_affine(norm, seed=0)
    refs = _refs(norm, lambda: torch_cls(CHANNELS, momentum=0.2))
    _train_then_eval(norm, refs, spatial)
    for m, ref in enumerate(refs):
        torch.testing.assert_close(norm.running_mean[m], ref.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var[m], ref.running_var, rtol=1e-5, atol=1e-6)


def test_batchnorm_spatial_gradients_match_torch():
    norm = BatchNorm(MEMBERS, CHANNELS)
    _set_affine(norm, seed=1)
    refs = _refs(norm, lambda: torch.nn.BatchNorm2d(CHANNELS))
    x = _inputs(0).requires_grad_(True)
    up = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    (norm(x) * up).sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    for m, ref in enumerate(refs):
        (ref(xr[m]) * up[m]).sum().backward()
        torch.testing.assert_close(norm.weight.grad[m], ref.weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(norm.bias.grad[m], ref.bias.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)


def test_layernorm_on_spatial_inputs_normalizes_channels_and_positions_like_torch():
    spatial = (6, 5)
    norm = LayerNorm(MEMBERS, CHANNELS)
    _set_affine(norm, seed=2)
    # torch.nn.LayerNorm([C, H, W]) with its element-wise affine set to the per-channel gamma / beta
    refs = _refs(norm, lambda: torch.nn.LayerNorm([CHANNELS, *spatial]))
    _train_then_eval(norm, refs, spatial)
    # formula: per sample, zero mean and unit variance over (C, H, W) before the affine
    with torch.no_grad():
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    out = norm(_inputs(1)).double()
    torch.testing.assert_close(out.mean(dim=(2, 3, 4)), torch.zeros(MEMBERS, BATCH, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=(2, 3, 4), unbiased=False), torch.ones(MEMBERS, BATCH, dtype=torch.float64), atol=1e-4, rtol=0)


@pytest.mark.parametrize("cls", [BatchNorm, LayerNorm, InstanceNorm, GroupNorm, SwitchNorm])
@pytest.mark.parametrize("shape", [(2, 5, CHANNELS), (MEMBERS, 5, CHANNELS + 1, 3), (MEMBERS, 5)], ids=["bad_M", "bad_C", "2d"])
def test_norms_reject_wrong_shapes_naming_the_expected_one(cls, shape):
    norm = cls(MEMBERS, CHANNELS)
    with pytest.raises(ValueError) as err:
        norm(torch.randn(*shape))
    msg = str(err.value)
    assert f"[{MEMBERS}, B, {CHANNELS}" in msg and str(list(shape)) in msg


@pytest.mark.parametrize("kwargs", [{"members": 0}, {"channels": -1}, {"eps": 0.0}, {"momentum": 1.5}])
def test_norm_constructors_reject_bad_sizes(kwargs):
    args = {"members": MEMBERS, "channels": CHANNELS, **kwargs}
    with pytest.raises(ValueError):
        GroupNorm(args.pop("members"), args.pop("channels"), **args)


# ---------------------------------------------------------------- InstanceNorm


@pytest.mark.parametrize(
    "spatial, torch_cls", [((6, 5), torch.nn.InstanceNorm2d), ((7,), torch.nn.InstanceNorm1d)], ids=["2d", "1d"]
)
def test_instancenorm_matches_torch_affine_per_member_in_train_and_eval(spatial, torch_cls):
    norm = InstanceNorm(MEMBERS, CHANNELS)
    _set_affine(norm, seed=3)
    refs = _refs(norm, lambda: torch_cls(CHANNELS, affine=True))
    _train_then_eval(norm, refs, spatial)
    assert not any(name.startswith("running") for name, _ in norm.named_buffers())


def test_instancenorm_with_running_stats_matches_torch_tracking():
    norm = InstanceNorm(MEMBERS, CHANNELS, momentum=0.3, track_running_stats=True)
    _set_affine(norm, seed=4)
    refs = _refs(norm, lambda: torch.nn.InstanceNorm2d(CHANNELS, affine=True, momentum=0.3, track_running_stats=True))
    _train_then_eval(norm, refs, (6, 5))
    for m, ref in enumerate(refs):
        torch.testing.assert_close(norm.running_mean[m], ref.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var[m], ref.running_var, rtol=1e-5, atol=1e-6)


def test_instancenorm_refuses_dense_inputs_explaining_why():
    norm = InstanceNorm(MEMBERS, CHANNELS)
    with pytest.raises(ValueError) as err:
        norm(torch.randn(MEMBERS, BATCH, CHANNELS))
    msg = str(err.value)
    assert "spatial" in msg and f"[{MEMBERS}, {BATCH}, {CHANNELS}]" in msg and "'layer'" in msg
    # an MLP (dense activations) built with it fails at its first forward with the same reason
    model = MLP(3, 2, widths=[4], seeds=[0, 1], norm="instance")
    with pytest.raises(ValueError, match="spatial"):
        model(torch.randn(6, 3))


# ---------------------------------------------------------------- GroupNorm


@pytest.mark.parametrize(  # one channel per group on dense inputs is refused (tested below)
    "groups, spatial", [(1, (6, 5)), (2, (6, 5)), (4, (6, 5)), (1, ()), (2, ())], ids=["2d-1", "2d-2", "2d-4", "dense-1", "dense-2"]
)
def test_groupnorm_matches_torch_per_member(groups, spatial):
    norm = GroupNorm(MEMBERS, CHANNELS, groups=groups)
    _set_affine(norm, seed=5 + groups)
    refs = _refs(norm, lambda: torch.nn.GroupNorm(groups, CHANNELS))
    # dense groups of 2 values have tiny variances: summation order shows at ~2e-5
    _train_then_eval(norm, refs, spatial, atol=1e-5 if spatial else 1e-4)


def test_groupnorm_gradients_match_torch():
    norm = GroupNorm(MEMBERS, CHANNELS, groups=2)
    _set_affine(norm, seed=6)
    refs = _refs(norm, lambda: torch.nn.GroupNorm(2, CHANNELS))
    x = _inputs(1).requires_grad_(True)
    up = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    (norm(x) * up).sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    for m, ref in enumerate(refs):
        (ref(xr[m]) * up[m]).sum().backward()
        torch.testing.assert_close(norm.weight.grad[m], ref.weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(norm.bias.grad[m], ref.bias.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "channels, expected", [(1, 1), (2, 1), (4, 2), (6, 3), (7, 1), (16, 8), (48, 24), (64, 32), (256, 32), (100, 25)]
)
def test_default_groups_is_the_largest_divisor_up_to_32_with_two_channels_per_group(channels, expected):
    assert default_groups(channels) == expected
    assert GroupNorm(2, channels).groups == expected


def test_groupnorm_rejects_groups_that_do_not_divide_channels_and_one_channel_groups_on_dense():
    with pytest.raises(ValueError, match="divisor of channels=4, got 3"):
        GroupNorm(MEMBERS, CHANNELS, groups=3)
    norm = GroupNorm(MEMBERS, CHANNELS, groups=CHANNELS)
    norm(torch.randn(MEMBERS, BATCH, CHANNELS, 3, 3))  # fine with positions: it is InstanceNorm
    with pytest.raises(ValueError, match="one value per sample"):
        norm(torch.randn(MEMBERS, BATCH, CHANNELS))


# ---------------------------------------------------------------- SwitchNorm

BRANCH_REFERENCE = {"batch": BatchNorm, "layer": LayerNorm, "instance": InstanceNorm}


def _one_hot(norm: SwitchNorm, branch: str) -> None:
    """Force the softmax mixes of mean and variance to the one branch."""
    k = SwitchNorm.BRANCHES.index(branch)
    with torch.no_grad():
        for logits in (norm.mean_weight, norm.var_weight):
            logits.fill_(-float("inf"))
            logits[:, k] = 0.0


@pytest.mark.parametrize(  # dense inputs have no instance statistics (tested below)
    "branch, spatial",
    [("batch", (6, 5)), ("layer", (6, 5)), ("instance", (6, 5)), ("batch", ()), ("layer", ())],
    ids=["batch-2d", "layer-2d", "instance-2d", "batch-dense", "layer-dense"],
)
def test_switchnorm_with_one_hot_weights_equals_that_normalizer_in_train_and_eval(branch, spatial):
    switch = SwitchNorm(MEMBERS, CHANNELS, momentum=0.2)
    pure = BRANCH_REFERENCE[branch](MEMBERS, CHANNELS, momentum=0.2)
    _set_affine(switch, seed=7)
    with torch.no_grad():
        pure.weight.copy_(switch.weight)
        pure.bias.copy_(switch.bias)
    _one_hot(switch, branch)
    for step in range(4):
        x = _inputs(step, spatial)
        torch.testing.assert_close(switch(x), pure(x), rtol=1e-4, atol=1e-4)
    switch.eval()
    pure.eval()
    x = _inputs(9, spatial)
    torch.testing.assert_close(switch(x), pure(x), rtol=1e-4, atol=1e-4)
    if branch == "batch":  # the BN branch's running averages are BatchNorm's (unbiased variance)
        torch.testing.assert_close(switch.running_mean, pure.running_mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(switch.running_var, pure.running_var, rtol=1e-4, atol=1e-5)


def test_switchnorm_uniform_mix_follows_the_formula():
    switch = SwitchNorm(MEMBERS, CHANNELS)
    _set_affine(switch, seed=8)
    with torch.no_grad():  # unequal logits, different per member
        switch.mean_weight.copy_(torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.5], [0.3, 0.3, 0.3]]))
        switch.var_weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]))
    x = _inputs(2).double()
    out = switch.double()(x)
    wm, wv = torch.softmax(switch.mean_weight, -1), torch.softmax(switch.var_weight, -1)
    for m in range(MEMBERS):
        xm = x[m]  # [B, C, H, W]
        stats = [  # (var, mean) per branch, biased, straight from the definition
            torch.var_mean(xm, dim=(0, 2, 3), keepdim=True, unbiased=False),
            torch.var_mean(xm, dim=(1, 2, 3), keepdim=True, unbiased=False),
            torch.var_mean(xm, dim=(2, 3), keepdim=True, unbiased=False),
        ]
        mean = sum(wm[m, k] * stats[k][1] for k in range(3))
        var = sum(wv[m, k] * stats[k][0] for k in range(3))
        expected = (xm - mean) / torch.sqrt(var + switch.eps) * switch.weight[m].view(-1, 1, 1) + switch.bias[m].view(-1, 1, 1)
        torch.testing.assert_close(out[m], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spatial", [(3, 3), ()], ids=["2d", "dense"])
def test_switchnorm_mixing_weights_receive_gradients(spatial):
    switch = SwitchNorm(MEMBERS, CHANNELS).double()
    _set_affine(switch, seed=9)
    x = _inputs(0, spatial).double()
    up = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (switch(x) * up).sum().backward()
    for logits in (switch.mean_weight, switch.var_weight):
        grad = logits.grad
        used = grad if spatial else grad[:, :2]
        assert torch.isfinite(grad).all()
        assert (used.abs() > 1e-8).all()  # every member's every used branch gets a signal
        torch.testing.assert_close(grad.sum(-1), torch.zeros(MEMBERS, dtype=torch.float64), atol=1e-10, rtol=0)
        if not spatial:
            assert torch.count_nonzero(grad[:, 2]) == 0  # no instance branch on dense inputs

    # and they are the true gradients (finite differences, double precision)
    def fn(mean_logits, var_logits):  # the scalar loss above as a function of the logits
        out = torch.func.functional_call(switch, {"mean_weight": mean_logits, "var_weight": var_logits}, (x,))
        return (out * up).sum()

    logits = (switch.mean_weight.detach().clone().requires_grad_(True), switch.var_weight.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, logits)


# ---------------------------------------------------------------- registry and the MLP


def test_registry_names_the_new_norms_and_each_builds_with_the_common_constructor():
    assert {"instance": InstanceNorm, "group": GroupNorm, "switch": SwitchNorm}.items() <= NORMS.items()
    for cls in filter(None, NORMS.values()):
        norm = cls(MEMBERS, 8, momentum=0.05, eps=1e-3)
        assert norm(torch.randn(MEMBERS, BATCH, 8, 3, 3)).shape == (MEMBERS, BATCH, 8, 3, 3)


@pytest.mark.parametrize("name", ["group", "switch"])
def test_mlp_trains_with_group_and_switch_norm_and_labels_their_parameters_as_norm(name):
    model = MLP(3, 2, widths=[8, 6], seeds=[0, 1, 2], norm=name)
    x = torch.randn(16, 3)
    out = model(x)
    assert out.shape == (3, 16, 2) and torch.isfinite(out).all()
    out.square().sum().backward()
    norm_roles = [r for r in model.param_roles() if r.role == "norm"]
    expected = 2 * 2 if name == "group" else 2 * 4  # gamma, beta (+ the two mixing logits)
    assert len(norm_roles) == expected
    assert all(r.param.grad is not None and r.param.shape[0] == 3 for r in norm_roles)
    model.eval()
    assert torch.isfinite(model(x)).all()
