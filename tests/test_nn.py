"""Behaviour of tamenet.nn and the MLP: initialization, population Linear, dropout, the per-member
random streams, batch/layer normalization, and the MLP's norm position, residual and dropout placement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from tamenet.models import MLP
from tamenet.nn import INITS, BatchNorm, Dropout, LayerNorm, Linear, MemberRandom, check_init, dropout, init_weight_

# ---------------------------------------------------------------- initialization

INIT_FORMULAS = {  # name: (distribution, variance(fan_in, fan_out))
    "xavier_uniform": ("uniform", lambda n_in, n_out: 2.0 / (n_in + n_out)),
    "xavier_normal": ("normal", lambda n_in, n_out: 2.0 / (n_in + n_out)),
    "he_uniform": ("uniform", lambda n_in, n_out: 2.0 / n_in),
    "he_normal": ("normal", lambda n_in, n_out: 2.0 / n_in),
}


def test_init_formula_table_covers_every_registered_init():
    assert set(INIT_FORMULAS) == set(INITS)


@pytest.mark.parametrize("name", sorted(INIT_FORMULAS))
def test_init_variance_and_bound_follow_the_formula_per_member(name):
    members, n_out, n_in = 4, 512, 256
    layer = Linear(members, n_in, n_out)
    init_weight_(layer.weight, name, seeds=[0, 1, 2, 3], layer=0, fan_in=n_in, fan_out=n_out)
    kind, variance = INIT_FORMULAS[name]
    var = variance(n_in, n_out)
    w = layer.weight.detach().double()
    for m in range(members):
        wm = w[m]
        assert abs(wm.mean().item()) < 5 * math.sqrt(var / wm.numel())
        assert wm.var().item() == pytest.approx(var, rel=0.03)
        if kind == "uniform":
            bound = math.sqrt(6.0 / (n_in + n_out)) if name.startswith("xavier") else math.sqrt(6.0 / n_in)
            assert wm.abs().max().item() <= bound
            assert wm.abs().max().item() >= 0.999 * bound
            assert stats.kstest(wm.flatten().numpy(), "uniform", args=(-bound, 2 * bound)).pvalue > 1e-3
        else:
            assert stats.kstest(wm.flatten().numpy(), "norm", args=(0.0, math.sqrt(var))).pvalue > 1e-3
    assert torch.count_nonzero(layer.bias) == 0


def test_mlp_biases_start_at_zero_and_members_differ():
    model = MLP(6, 3, widths=[8, 5], seeds=[0, 1, 2])
    for linear in [*model.hidden, model.output]:
        assert torch.count_nonzero(linear.bias) == 0
        assert not torch.equal(linear.weight[0], linear.weight[1])
        assert not torch.equal(linear.weight[1], linear.weight[2])


@pytest.mark.parametrize("name", ["zeros", "constant"])
def test_constant_inits_are_refused_with_the_symmetry_reason(name):
    with pytest.raises(ValueError) as err:
        check_init(name)
    msg = str(err.value)
    assert f"'{name}'" in msg
    # the reason: every unit computes the same output and gets the same gradient (symmetry never breaks)
    assert "same output" in msg and "same gradient" in msg
    with pytest.raises(ValueError):
        MLP(3, 2, widths=[4], seeds=[0], init=name)


def test_unknown_init_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        check_init("xavier_unifrom")
    msg = str(err.value)
    assert "xavier_unifrom" in msg
    for valid in INITS:
        assert valid in msg
    assert "did you mean 'xavier_uniform'" in msg


def test_member_weights_equal_a_population_of_one_with_its_seed():
    seeds = [11, 5, 42]
    pop = MLP(7, 3, widths=[9, 6], seeds=seeds, init="xavier_uniform")
    for m, seed in enumerate(seeds):
        single = MLP(7, 3, widths=[9, 6], seeds=[seed], init="xavier_uniform")
        for a, b in zip([*pop.hidden, pop.output], [*single.hidden, single.output]):
            assert torch.equal(a.weight[m], b.weight[0])
    # layers of one member are not copies of each other's draws
    w0 = pop.hidden[1].weight[0].flatten()[:15]
    w1 = pop.output.weight[0].flatten()[:15]
    assert not torch.equal(w0, w1)


# ---------------------------------------------------------------- Linear


def _linear(members=3, n_in=5, n_out=4, seed=0):
    torch.manual_seed(seed)
    layer = Linear(members, n_in, n_out)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    return layer


@pytest.mark.parametrize("shared", [True, False], ids=["shared_BF", "per_member_MBF"])
def test_linear_equals_functional_linear_per_member_with_gradients(shared):
    layer = _linear()
    torch.manual_seed(1)
    x = torch.randn(6, 5) if shared else torch.randn(3, 6, 5)
    x.requires_grad_(True)
    upstream = torch.randn(3, 6, 4)
    y = layer(x)
    assert y.shape == (3, 6, 4)
    (y * upstream).sum().backward()

    ref_w = layer.weight.detach().clone().requires_grad_(True)
    ref_b = layer.bias.detach().clone().requires_grad_(True)
    ref_x = x.detach().clone().requires_grad_(True)
    total = 0.0
    for m in range(3):
        xm = ref_x if shared else ref_x[m]
        ym = F.linear(xm, ref_w[m].T, ref_b[m])
        torch.testing.assert_close(y[m], ym, rtol=1e-6, atol=1e-6)
        total = total + (ym * upstream[m]).sum()
    total.backward()
    torch.testing.assert_close(layer.weight.grad, ref_w.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer.bias.grad, ref_b.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-6, atol=1e-6)


def test_linear_without_bias_equals_functional_linear():
    torch.manual_seed(0)
    layer = Linear(2, 3, 4, bias=False)
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(2, 5, 3)
    for m in range(2):
        torch.testing.assert_close(layer(x)[m], F.linear(x[m], layer.weight[m].T))
        torch.testing.assert_close(layer(x[0])[m], F.linear(x[0], layer.weight[m].T))


@pytest.mark.parametrize("n_out", [1, 10, 15, 16], ids=lambda n: f"out{n}")
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared_BF", "per_member_MBF"])
def test_narrow_layer_values_and_gradients_equal_the_plain_batched_matmul(shared, bias, n_out):
    """Under NARROW outputs the layer takes `NarrowProduct` (transposed products); its outputs and its gradients for
    x, W and b equal autograd through the plain `baddbmm` to float32 rounding, the weight gradient in W's own layout.
    At 16 outputs the plain product runs: the same bits as baddbmm."""
    from tamenet.nn.layers import NARROW

    torch.manual_seed(0)
    layer = Linear(4, 33, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.normal_()
        if bias:
            layer.bias.normal_()
    x = (torch.randn(70, 33) if shared else torch.randn(4, 70, 33)).requires_grad_(True)
    upstream = torch.randn(4, 70, n_out)
    y = layer(x)
    (y * upstream).sum().backward()

    ref_w = layer.weight.detach().clone().requires_grad_(True)
    ref_b = layer.bias.detach().clone().requires_grad_(True) if bias else None
    ref_x = x.detach().clone().requires_grad_(True)
    xm = ref_x.expand(4, *ref_x.shape) if shared else ref_x
    ref_y = torch.baddbmm(ref_b.unsqueeze(1), xm, ref_w) if bias else torch.bmm(xm, ref_w)
    (ref_y * upstream).sum().backward()
    if n_out >= NARROW:
        assert torch.equal(y, ref_y) and torch.equal(layer.weight.grad, ref_w.grad)
    torch.testing.assert_close(y, ref_y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad, ref_w.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(layer.bias.grad, ref_b.grad, rtol=1e-5, atol=1e-5)
    assert layer.weight.grad.is_contiguous()  # W's layout: the optimizer's in-place ops run dense
    with torch.no_grad():
        assert torch.equal(layer(x), y)  # inference takes the same product as training


def test_narrow_product_backward_passes_gradcheck_in_float64():
    """`NarrowProduct.backward` against finite differences (float64), with and without a bias, x per member or shared."""
    from tamenet.nn.layers import NarrowProduct

    torch.manual_seed(0)
    w = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    shared = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(NarrowProduct.apply, (x, w, b))
    assert torch.autograd.gradcheck(NarrowProduct.apply, (x, w, None))
    assert torch.autograd.gradcheck(lambda s, w, b: NarrowProduct.apply(s.expand(3, 7, 6), w, b), (shared, w, b))


@pytest.mark.parametrize("rows, n_in, n_out", [(37, 64, 10), (14, 256, 10), (7, 5, 1), (64, 64, 256), (32, 256, 256)],
                         ids=lambda v: str(v))
def test_a_chunk_of_members_gets_the_populations_bits(rows, n_in, n_out):
    """The contract at the layer: the members of any chunk of a population of 18 (one member alone included) get,
    bit for bit, the outputs and gradients they get inside the population. Without MKL's strict mode
    (`tamenet.blas`) the (37, 64, 10) layer's members 9-17 alone differed from the same members among 18."""
    torch.manual_seed(0)
    x, upstream = torch.randn(18, rows, n_in), torch.randn(18, rows, n_out)

    def run(first: int, last: int):
        layer = Linear(last - first, n_in, n_out)
        with torch.no_grad():
            layer.weight.copy_(weight[first:last])
            layer.bias.copy_(bias[first:last])
        xs = x[first:last].clone().requires_grad_(True)
        y = layer(xs)
        (y * upstream[first:last]).sum().backward()
        return y.detach(), layer.weight.grad, layer.bias.grad, xs.grad

    weight, bias = torch.randn(18, n_in, n_out), torch.randn(18, n_out)
    whole = run(0, 18)
    for first, last in [(0, 1), (9, 18), (3, 5), (17, 18), (1, 18)]:
        for got, want in zip(run(first, last), whole):
            assert torch.equal(got, want[first:last]), (first, last)


def test_narrow_layer_under_autocast_takes_the_plain_product_and_trains():
    """Under autocast (bf16 on the CPU) the narrow layer takes the plain product, which autocast casts: the output is
    bf16 and the backward reaches the float32 weight (a custom function would see mixed dtypes there)."""
    torch.manual_seed(0)
    layer = _linear(members=2, n_in=8, n_out=3)
    x = torch.randn(2, 6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and torch.isfinite(layer.weight.grad).all()
    ref = torch.baddbmm(layer.bias.unsqueeze(1), x, layer.weight)
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "shape", [(6, 7), (3, 6, 7), (4, 6, 5), (2, 3, 6, 5), (5,)], ids=["BF_bad_F", "MBF_bad_F", "bad_M", "4d", "1d"]
)
def test_linear_rejects_wrong_input_shape_naming_the_expected_one(shape):
    layer = _linear()
    with pytest.raises(ValueError) as err:
        layer(torch.randn(*shape))
    msg = str(err.value)
    assert "[B, 5]" in msg and "[3, B, 5]" in msg
    assert str(list(shape)) in msg


# ---------------------------------------------------------------- dropout


def test_dropout_keeps_the_expectation_per_member():
    p = [0.1, 0.5, 0.8]
    drop = Dropout(p, random=MemberRandom([0, 1, 2]), stream=3).train()
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6) + 2.0
    draws = 2000
    acc = torch.zeros_like(x, dtype=torch.float64)
    for step in range(draws):
        drop.random.step = step
        acc += drop(x).double()
    mean = acc / draws
    for m, pm in enumerate(p):
        # x * keep / (1 - p): mean x, std |x| sqrt(p / (1 - p)); the mean of N draws has std / sqrt(N)
        sigma = x[m].abs().double() * math.sqrt(pm / (1 - pm) / draws)
        assert torch.all((mean[m] - x[m].double()).abs() <= 5 * sigma)


def test_dropout_zero_share_matches_p_and_kept_units_are_rescaled():
    p = [0.0, 0.2, 0.5, 0.9]
    drop = Dropout(p, random=MemberRandom([3, 4, 5, 6]), stream=1).train()
    x = torch.rand(200, 500) + 0.5  # shared input, strictly positive
    out = drop(x)
    assert out.shape == (4, 200, 500)
    n = x.numel()
    for m, pm in enumerate(p):
        zeros = (out[m] == 0).double().mean().item()
        assert abs(zeros - pm) <= 5 * math.sqrt(pm * (1 - pm) / n) + 1e-12
        kept = out[m] != 0
        torch.testing.assert_close(out[m][kept], x[kept] / (1 - pm))
    assert torch.equal(out[0], x)  # p = 0 is the exact identity, even next to members that drop


def test_dropout_functional_p_zero_is_identity_and_p_is_the_drop_probability():
    x = torch.randn(2, 3, 4)
    u = torch.full((2, 3, 4), 0.3)
    out = dropout(x, torch.tensor([0.0, 0.5]), u)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], torch.zeros_like(x[1]))  # draws 0.3 < p = 0.5: all dropped
    out = dropout(x, torch.tensor([0.0, 0.25]), u)
    torch.testing.assert_close(out[1], x[1] / 0.75)  # draws >= p: kept, scaled by 1 / (1 - p)


def test_dropout_is_identity_in_eval_mode():
    drop = Dropout([0.5, 0.7], random=MemberRandom([0, 1]), stream=0)
    x = torch.randn(2, 8, 5)
    assert not torch.equal(drop.train()(x), x)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("shared", [True, False], ids=["shared_BF", "per_member_MBF"])
def test_dropout_member_masks_equal_a_population_of_one_with_its_seed(shared):
    seeds, p = [10, 20, 30], [0.5, 0.3, 0.6]
    pop = Dropout(p, random=MemberRandom(seeds), stream=2).train()
    pop.random.step = 17
    torch.manual_seed(0)
    x = torch.randn(16, 9) if shared else torch.randn(3, 16, 9)
    out = pop(x)
    for m, seed in enumerate(seeds):
        single = Dropout([p[m]], random=MemberRandom([seed]), stream=2).train()
        single.random.step = 17
        xm = x if shared else x[m : m + 1]
        assert torch.equal(out[m], single(xm)[0])


def test_dropout_masks_change_with_the_step():
    drop = Dropout([0.5], random=MemberRandom([7]), stream=0).train()
    x = torch.ones(1, 64, 32)
    drop.random.step = 4
    a = drop(x) == 0
    drop.random.step = 5
    b = drop(x) == 0
    drop.random.step = 4
    assert torch.equal(drop(x) == 0, a)  # same step, same mask
    # independent masks with p = 0.5 disagree on about half the units
    assert abs((a != b).double().mean().item() - 0.5) < 0.05


# ---------------------------------------------------------------- MemberRandom

N_DRAWS = 100_000


def test_member_random_uniform_is_uniform_on_unit_interval():
    u = MemberRandom([0, 1, 2]).uniform(0, (N_DRAWS,))
    assert u.shape == (3, N_DRAWS) and u.dtype == torch.float32
    assert u.min().item() >= 0.0 and u.max().item() < 1.0
    for m in range(3):
        um = u[m].double()
        assert abs(um.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / N_DRAWS)
        assert um.var().item() == pytest.approx(1 / 12, rel=0.02)
        assert stats.kstest(um.numpy(), "uniform").pvalue > 1e-3


def test_member_random_normal_is_standard_normal():
    z = MemberRandom([0, 1, 2]).normal(4, (N_DRAWS,))
    assert z.shape == (3, N_DRAWS)
    assert torch.isfinite(z).all()
    for m in range(3):
        zm = z[m].double()
        assert abs(zm.mean().item()) < 5 / math.sqrt(N_DRAWS)
        assert zm.std().item() == pytest.approx(1.0, rel=0.02)
        assert stats.kstest(zm.numpy(), "norm").pvalue > 1e-3


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()


def test_member_random_members_and_neighbouring_elements_are_uncorrelated():
    u = MemberRandom([0, 1, 2, 3]).uniform(0, (N_DRAWS,))
    bound = 5 / math.sqrt(N_DRAWS)
    for a in range(4):
        for b in range(a + 1, 4):
            assert abs(_corr(u[a], u[b])) < bound
        assert abs(_corr(u[a, :-1], u[a, 1:])) < bound  # lag-1 within a member
    # consecutive steps of the same member are independent too
    r = MemberRandom([0])
    first = r.uniform(0, (N_DRAWS,))[0]
    r.step = 1
    assert abs(_corr(first, r.uniform(0, (N_DRAWS,))[0])) < bound


def test_member_random_streams_differ_and_are_uncorrelated():
    r = MemberRandom([5, 6])
    a, b = r.uniform(0, (N_DRAWS,)), r.uniform(1, (N_DRAWS,))
    assert not torch.equal(a, b)
    for m in range(2):
        assert abs(_corr(a[m], b[m])) < 5 / math.sqrt(N_DRAWS)
    assert torch.equal(a, r.uniform(0, (N_DRAWS,)))  # same stream, same step: same draws


def test_member_random_draws_do_not_depend_on_the_population():
    pop = MemberRandom([3, 8, 1])
    pop.step = 9
    for m, seed in enumerate(pop.seeds):
        one = MemberRandom([seed])
        one.step = 9
        assert torch.equal(pop.uniform(2, (5, 7))[m], one.uniform(2, (5, 7))[0])
        assert torch.equal(pop.normal(2, (5, 7))[m], one.normal(2, (5, 7))[0])
    sub = pop.select([2, 0])
    assert torch.equal(sub.uniform(1, (30,)), pop.uniform(1, (30,))[[2, 0]])


# ---------------------------------------------------------------- normalization


def _set_affine(module, members, channels, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.weight.copy_(torch.rand(members, channels, generator=g) + 0.5)
        module.bias.copy_(torch.randn(members, channels, generator=g))


def _torch_bns(norm: BatchNorm, momentum: float) -> list[torch.nn.BatchNorm1d]:
    refs = []
    for m in range(norm.members):
        ref = torch.nn.BatchNorm1d(norm.channels, momentum=momentum, eps=norm.eps)
        with torch.no_grad():
            ref.weight.copy_(norm.weight[m])
            ref.bias.copy_(norm.bias[m])
        refs.append(ref)
    return refs


def test_batchnorm_training_matches_torch_per_member_with_running_stats():
    members, channels, momentum = 3, 4, 0.3
    norm = BatchNorm(members, channels, momentum=momentum).train()
    _set_affine(norm, members, channels, seed=0)
    refs = [r.train() for r in _torch_bns(norm, momentum)]
    torch.manual_seed(0)
    expect_mean = torch.zeros(members, channels, dtype=torch.float64)
    expect_var = torch.ones(members, channels, dtype=torch.float64)
    for step in range(5):
        x = torch.randn(members, 16, channels) * (1 + step) + step
        out = norm(x)
        for m in range(members):
            torch.testing.assert_close(out[m], refs[m](x[m]), rtol=1e-5, atol=1e-5)
        # the EMA written out: r <- (1 - alpha) r + alpha * batch_stat, unbiased batch variance
        xd = x.double()
        expect_mean = (1 - momentum) * expect_mean + momentum * xd.mean(1)
        expect_var = (1 - momentum) * expect_var + momentum * xd.var(1, unbiased=True)
    for m in range(members):
        torch.testing.assert_close(norm.running_mean[m], refs[m].running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var[m], refs[m].running_var, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.running_mean.double(), expect_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.running_var.double(), expect_var, rtol=1e-5, atol=1e-6)

    # eval mode: the running statistics replace the batch ones
    norm.eval()
    x = torch.randn(members, 7, channels)
    out = norm(x)
    for m in range(members):
        refs[m].eval()
        torch.testing.assert_close(out[m], refs[m](x[m]), rtol=1e-5, atol=1e-5)
        manual = (x[m] - norm.running_mean[m]) / torch.sqrt(norm.running_var[m] + norm.eps) * norm.weight[m] + norm.bias[m]
        torch.testing.assert_close(out[m], manual, rtol=1e-5, atol=1e-5)
    before = norm.running_mean.clone()
    norm(x + 10)
    assert torch.equal(norm.running_mean, before)  # eval does not update the statistics


def test_batchnorm_gradients_match_torch_per_member():
    members, channels = 2, 3
    norm = BatchNorm(members, channels).train()
    _set_affine(norm, members, channels, seed=1)
    refs = _torch_bns(norm, 0.1)
    torch.manual_seed(1)
    x = torch.randn(members, 10, channels)
    up = torch.randn(members, 10, channels)
    (norm(x) * up).sum().backward()
    for m in range(members):
        (refs[m](x[m]) * up[m]).sum().backward()
        torch.testing.assert_close(norm.weight.grad[m], refs[m].weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(norm.bias.grad[m], refs[m].bias.grad, rtol=1e-5, atol=1e-5)


def test_layernorm_matches_torch_per_member():
    members, channels = 3, 6
    norm = LayerNorm(members, channels, eps=1e-5)
    _set_affine(norm, members, channels, seed=2)
    torch.manual_seed(2)
    x = torch.randn(members, 8, channels) * 3 + 1
    out = norm(x)
    for m in range(members):
        ref = torch.nn.LayerNorm(channels, eps=1e-5)
        with torch.no_grad():
            ref.weight.copy_(norm.weight[m])
            ref.bias.copy_(norm.bias[m])
        torch.testing.assert_close(out[m], ref(x[m]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- MLP


def _hand_layer_norm(z, gamma, beta, eps=1e-5):
    mean = z.mean(-1, keepdim=True)
    var = z.var(-1, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps) * gamma + beta


def _tiny_mlp(position):
    model = MLP(3, 2, widths=[4], seeds=[0, 1], norm="layer", norm_position=position, activation="relu")
    _set_affine(model.norms[0], 2, 4, seed=5)
    with torch.no_grad():
        for linear in [*model.hidden, model.output]:
            linear.bias.normal_(generator=torch.Generator().manual_seed(6))
    return model


def test_mlp_norm_position_before_and_after_the_activation():
    torch.manual_seed(0)
    x = torch.randn(5, 3)
    outs = {}
    for position in ["before", "after"]:
        model = _tiny_mlp(position)
        lin0, norm, lin1 = model.hidden[0], model.norms[0], model.output
        out = model(x)
        for m in range(2):
            z = x @ lin0.weight[m] + lin0.bias[m]
            if position == "before":
                h = torch.relu(_hand_layer_norm(z, norm.weight[m], norm.bias[m]))
            else:
                h = _hand_layer_norm(torch.relu(z), norm.weight[m], norm.bias[m])
            torch.testing.assert_close(out[m], h @ lin1.weight[m] + lin1.bias[m], rtol=1e-5, atol=1e-5)
        outs[position] = out
    assert not torch.allclose(outs["before"], outs["after"], atol=1e-3)


def test_mlp_residual_adds_the_input_only_where_widths_match():
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    model = MLP(4, 2, widths=[4, 4, 3], seeds=[0, 1], residual=True, activation="tanh")
    plain = MLP(4, 2, widths=[4, 4, 3], seeds=[0, 1], residual=False, activation="tanh")
    out, out_plain = model(x), plain(x)
    for m in range(2):
        h, hp = x, x
        for i, lin in enumerate(model.hidden):
            z = torch.tanh(h @ lin.weight[m] + lin.bias[m])
            h = h + z if i < 2 else z  # 4 -> 4, 4 -> 4 skip; 4 -> 3 cannot
            hp = torch.tanh(hp @ lin.weight[m] + lin.bias[m])
        ref = h @ model.output.weight[m] + model.output.bias[m]
        ref_plain = hp @ model.output.weight[m] + model.output.bias[m]
        torch.testing.assert_close(out[m], ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_plain[m], ref_plain, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, out_plain, atol=1e-3)


def _hand_mlp_forward(model, x, masks=None):
    """Member-by-member forward of a relu MLP without norms; masks[i][m] is the keep-scale of site i."""
    outs = []
    for m in range(model.members):
        h = x if masks is None else x * masks[0][m]
        for i, lin in enumerate(model.hidden):
            h = torch.relu(h @ lin.weight[m] + lin.bias[m])
            if masks is not None:
                h = h * masks[i + 1][m]
        outs.append(h @ model.output.weight[m] + model.output.bias[m])
    return torch.stack(outs)


def test_mlp_dropout_is_never_applied_after_the_output_layer():
    p_in, p_hidden = [0.2, 0.1], [0.5, 0.3]
    model = MLP(5, 3, widths=[8, 6], seeds=[0, 1], dropout=[p_in, p_hidden, p_hidden])
    assert len(model.dropouts) == 2  # one per hidden layer, none for the output
    torch.manual_seed(0)
    x = torch.randn(10, 5)

    model.eval()
    first = model(x)
    model.random.step = 3
    assert torch.equal(model(x), first)  # eval: deterministic, no dropout anywhere
    torch.testing.assert_close(first, _hand_mlp_forward(model, x), rtol=1e-5, atol=1e-5)

    model.train()
    model.random.step = 3
    out = model(x)
    assert not torch.allclose(out, first)
    # the masks the model drew: input site (stream 0), hidden sites (streams 1, 2); nothing after the output
    probs = [p_in, p_hidden, p_hidden]
    shapes = [(10, 5), (10, 8), (10, 6)]
    masks = []
    for stream, (p, shape) in enumerate(zip(probs, shapes)):
        u = model.random.uniform(stream, shape)
        pm = torch.tensor(p).view(-1, 1, 1)
        masks.append((u >= pm).float() / (1 - pm))
    torch.testing.assert_close(out, _hand_mlp_forward(model, x, masks), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_residual_mlp_adds_the_scaled_branch_where_widths_agree(scale):
    """h_1 = relu(x W_1 + b_1) (widths differ: no skip); h_l = h_{l-1} + scale * relu(h_{l-1} W_l + b_l)."""
    from tamenet.models import MLP

    torch.manual_seed(0)
    model = MLP(5, 3, widths=[6, 6, 6], seeds=[0, 1], residual=True, residual_scale=scale).eval()
    with torch.no_grad():
        for linear in model.hidden:
            linear.bias.normal_()
    x = torch.randn(4, 5)
    for m in range(2):
        h = torch.relu(x @ model.hidden[0].weight[m] + model.hidden[0].bias[m])
        for linear in model.hidden[1:]:
            h = h + scale * torch.relu(h @ linear.weight[m] + linear.bias[m])
        expected = h @ model.output.weight[m] + model.output.bias[m]
        torch.testing.assert_close(model(x)[m], expected, rtol=1e-5, atol=1e-5)
