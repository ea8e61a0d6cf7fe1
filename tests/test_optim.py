"""Behaviour of tamenet's population optimizers and learning-rate schedules: every member, with its own
hyper-parameters, follows exactly the torch.optim trajectory it would follow alone."""

from __future__ import annotations

import math

import pytest
import torch

from tamenet.config import ScheduleConfig
from tamenet.models import ParamRole
from tamenet.train import lr_factor, make_optimizer

M, B, N_IN, N_OUT, STEPS = 3, 16, 4, 3, 20


def _problem(dtype):
    """A small per-member regression: y[m] ~ X @ W[m]^T + b[m], with shared X and per-member targets."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(B, N_IN, generator=g, dtype=dtype)
    Y = torch.randn(M, B, N_OUT, generator=g, dtype=dtype)
    W0 = torch.randn(M, N_OUT, N_IN, generator=g, dtype=dtype)
    b0 = torch.randn(M, N_OUT, generator=g, dtype=dtype)
    return X, Y, W0, b0


def _member_loss(X, y, W, b):
    return 0.5 * (X @ W.transpose(-1, -2) + b.unsqueeze(-2) - y).square().mean()


def _hyper(dtype, **values):
    base = {"momentum": [0.0] * M, "beta1": [0.9] * M, "beta2": [0.999] * M, "rho": [0.9] * M, "weight_decay": [0.0] * M}
    base.update(values)
    return {k: torch.tensor(v, dtype=dtype) for k, v in base.items()}


def _run_population(name, lrs, hyper, *, nesterov=False, dtype=torch.float64, steps=STEPS, eps=1e-8):
    X, Y, W0, b0 = _problem(dtype)
    W, b = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(b0.clone())
    roles = [ParamRole("w", W, "weight", 0), ParamRole("b", b, "bias", 0)]
    opt = make_optimizer(name, roles, hyper, eps=eps, nesterov=nesterov)
    lr = torch.tensor(lrs, dtype=dtype)
    for _ in range(steps):
        W.grad = b.grad = None
        sum(_member_loss(X, Y[m], W[m], b[m]) for m in range(M)).backward()
        opt.step(lr)
    return W.detach(), b.detach(), W0, b0


def _run_torch(m, make_opt, *, dtype=torch.float64, steps=STEPS, before_step=None):
    X, Y, W0, b0 = _problem(dtype)
    W, b = torch.nn.Parameter(W0[m].clone()), torch.nn.Parameter(b0[m].clone())
    opt = make_opt([W, b])
    for _ in range(steps):
        opt.zero_grad()
        _member_loss(X, Y[m], W, b).backward()
        if before_step is not None:
            before_step(W, b)
        opt.step()
    return W.detach(), b.detach()


def _assert_same_trajectory(pop, refs, rtol):
    W, b, W0, b0 = pop
    for m, (W_ref, b_ref) in enumerate(refs):
        # compare the displacement from the start, so the tolerance is relative to what the optimizer did
        torch.testing.assert_close(W[m] - W0[m], W_ref - W0[m], rtol=rtol, atol=1e-12)
        torch.testing.assert_close(b[m] - b0[m], b_ref - b0[m], rtol=rtol, atol=1e-12)
        assert (W_ref - W0[m]).abs().max() > 1e-4  # the run did move


CASES = {
    # name: (tamenet optimizer, nesterov, lrs, hyper, torch factory(m))
    "sgd_plain": (
        "sgd", False, [0.1, 0.05, 0.01], {},
        lambda m, lrs, h: lambda ps: torch.optim.SGD(ps, lr=lrs[m]),
    ),
    "sgd_momentum": (
        "sgd", False, [0.05, 0.02, 0.1], {"momentum": [0.9, 0.5, 0.0]},
        lambda m, lrs, h: lambda ps: torch.optim.SGD(ps, lr=lrs[m], momentum=h["momentum"][m]),
    ),
    "sgd_nesterov": (
        "sgd", True, [0.05, 0.02, 0.1], {"momentum": [0.9, 0.7, 0.5]},
        lambda m, lrs, h: lambda ps: torch.optim.SGD(ps, lr=lrs[m], momentum=h["momentum"][m], nesterov=True),
    ),
    "rmsprop": (
        "rmsprop", False, [1e-3, 3e-3, 1e-2], {"rho": [0.9, 0.99, 0.8]},
        lambda m, lrs, h: lambda ps: torch.optim.RMSprop(ps, lr=lrs[m], alpha=h["rho"][m], eps=1e-8),
    ),
    "rmsprop_momentum": (
        "rmsprop", False, [1e-3, 3e-3, 1e-2], {"rho": [0.9, 0.99, 0.8], "momentum": [0.9, 0.0, 0.5]},
        lambda m, lrs, h: lambda ps: torch.optim.RMSprop(
            ps, lr=lrs[m], alpha=h["rho"][m], eps=1e-8, momentum=h["momentum"][m]
        ),
    ),
    "adam": (
        "adam", False, [3e-4, 1e-3, 3e-3], {"beta1": [0.9, 0.9, 0.8], "beta2": [0.999, 0.99, 0.95]},
        lambda m, lrs, h: lambda ps: torch.optim.Adam(ps, lr=lrs[m], betas=(h["beta1"][m], h["beta2"][m]), eps=1e-8),
    ),
    "adam_weight_decay_is_adamw": (
        "adam", False, [3e-4, 1e-3, 3e-3],
        {"beta1": [0.9, 0.9, 0.8], "beta2": [0.999, 0.99, 0.95], "weight_decay": [0.01, 0.5, 0.0]},
        lambda m, lrs, h: lambda ps: torch.optim.AdamW(
            ps, lr=lrs[m], betas=(h["beta1"][m], h["beta2"][m]), eps=1e-8, weight_decay=h["weight_decay"][m]
        ),
    ),
    "adamw": (
        "adamw", False, [3e-4, 1e-3, 1e-2],
        {"beta1": [0.9, 0.85, 0.9], "beta2": [0.999, 0.99, 0.999], "weight_decay": [0.01, 0.1, 1.0]},
        lambda m, lrs, h: lambda ps: torch.optim.AdamW(
            ps, lr=lrs[m], betas=(h["beta1"][m], h["beta2"][m]), eps=1e-8, weight_decay=h["weight_decay"][m]
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_member_follows_its_own_torch_optim_run(case):
    name, nesterov, lrs, values, factory = CASES[case]
    hyper = _hyper(torch.float64, **values)
    h = {k: v.tolist() for k, v in hyper.items()}
    pop = _run_population(name, lrs, hyper, nesterov=nesterov)
    refs = [_run_torch(m, factory(m, lrs, h)) for m in range(M)]
    _assert_same_trajectory(pop, refs, rtol=1e-6)


@pytest.mark.parametrize("case", ["sgd_momentum", "rmsprop_momentum", "adam", "adamw"])
def test_float32_members_with_float32_hyper_parameters_match_torch_optim(case):
    """The loop's dtypes: float32 parameters and hyper-parameters (member_hyper gives float32 [M])."""
    name, nesterov, lrs, values, factory = CASES[case]
    hyper = _hyper(torch.float32, **values)
    h = {k: [float(x) for x in _hyper(torch.float64, **values)[k]] for k in hyper}
    W, b, W0, b0 = _run_population(name, lrs, hyper, nesterov=nesterov, dtype=torch.float32)
    for m in range(M):
        W_ref, b_ref = _run_torch(m, factory(m, lrs, h), dtype=torch.float32)
        # float32 rounding (hyper-parameters stored in float32, e.g. 0.999) allows a few ulps per step
        torch.testing.assert_close(W[m], W_ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(b[m], b_ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(W[m] - W0[m], W_ref - W0[m], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_weight_decay_is_decoupled_for_sgd_and_rmsprop(name):
    """`w <- w - lr * wd * w` before the step, then the optimizer's own update on the gradient."""
    lrs, wds = [0.05, 0.01, 0.02], [0.1, 0.5, 0.0]
    values = {"weight_decay": wds, "momentum": [0.9, 0.5, 0.0], "rho": [0.9, 0.99, 0.8]}
    hyper = _hyper(torch.float64, **values)
    pop = _run_population(name, lrs, hyper)
    refs = []
    for m in range(M):
        if name == "sgd":
            factory = lambda ps, m=m: torch.optim.SGD(ps, lr=lrs[m], momentum=values["momentum"][m])
        else:
            factory = lambda ps, m=m: torch.optim.RMSprop(
                ps, lr=lrs[m], alpha=values["rho"][m], momentum=values["momentum"][m], eps=1e-8
            )

        def decay(W, b, m=m):
            with torch.no_grad():
                W.mul_(1 - lrs[m] * wds[m])
                b.mul_(1 - lrs[m] * wds[m])

        refs.append(_run_torch(m, factory, before_step=decay))
    _assert_same_trajectory(pop, refs, rtol=1e-6)
    # and the decay did matter: without it the trajectory is a different one
    plain = _run_population(name, lrs, _hyper(torch.float64, **{**values, "weight_decay": [0.0] * M}))
    assert not torch.allclose(plain[0][0], pop[0][0], rtol=1e-4)


@pytest.mark.parametrize(
    "name,values",
    [
        ("sgd", {"momentum": [0.9, 0.9, 0.9], "weight_decay": [0.1, 0.1, 0.1]}),
        ("rmsprop", {"momentum": [0.5, 0.5, 0.5], "weight_decay": [0.1, 0.1, 0.1]}),
        ("adam", {"weight_decay": [0.1, 0.1, 0.1]}),
        ("adamw", {"weight_decay": [0.1, 0.1, 0.1]}),
    ],
)
def test_member_with_zero_lr_does_not_move(name, values):
    W, b, W0, b0 = _run_population(name, [1e-2, 0.0, 1e-2], _hyper(torch.float32, **values), dtype=torch.float32)
    assert torch.equal(W[1], W0[1]) and torch.equal(b[1], b0[1])
    for m in (0, 2):
        assert not torch.equal(W[m], W0[m])


def test_optimizer_state_round_trip_continues_the_same_trajectory():
    hyper = _hyper(torch.float64, beta1=[0.9, 0.8, 0.7], beta2=[0.999, 0.99, 0.9])
    lrs = [1e-2, 3e-3, 1e-3]
    full = _run_population("adam", lrs, hyper, steps=10)

    X, Y, W0, b0 = _problem(torch.float64)
    W, b = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(b0.clone())
    roles = [ParamRole("w", W, "weight", 0), ParamRole("b", b, "bias", 0)]
    lr = torch.tensor(lrs, dtype=torch.float64)

    def run(opt, steps):
        for _ in range(steps):
            W.grad = b.grad = None
            sum(_member_loss(X, Y[m], W[m], b[m]) for m in range(M)).backward()
            opt.step(lr)

    first = make_optimizer("adam", roles, hyper, eps=1e-8, nesterov=False)
    run(first, 4)
    saved = first.state_dict()
    resumed = make_optimizer("adam", roles, hyper, eps=1e-8, nesterov=False)
    resumed.load_state_dict(saved)
    run(resumed, 6)
    assert torch.equal(W.detach(), full[0]) and torch.equal(b.detach(), full[1])


def test_nesterov_is_refused_for_other_optimizers():
    W = torch.nn.Parameter(torch.zeros(M, 2))
    with pytest.raises(ValueError, match="nesterov"):
        make_optimizer("adam", [ParamRole("w", W, "weight", 0)], _hyper(torch.float32), eps=1e-8, nesterov=True)


# ---------------------------------------------------------------- schedules


def test_constant_schedule_is_one():
    cfg = ScheduleConfig(kind="constant")
    for epoch in [0.0, 0.5, 3.0, 99.0]:
        assert lr_factor(cfg, epoch, 100) == 1.0


def test_step_schedule_decays_by_gamma_every_step_size_epochs():
    cfg = ScheduleConfig(kind="step", step_size=3, gamma=0.5)
    expected = {0.0: 1.0, 2.9: 1.0, 3.0: 0.5, 5.5: 0.5, 6.0: 0.25, 9.5: 0.125}
    for epoch, value in expected.items():
        assert lr_factor(cfg, epoch, 20) == pytest.approx(value, rel=1e-12)


def test_cosine_schedule_follows_the_half_cosine_to_min_factor():
    cfg = ScheduleConfig(kind="cosine", min_factor=0.1)
    total = 10
    for epoch in [0.0, 2.5, 5.0, 7.5, 10.0, 12.0]:
        progress = min(epoch / total, 1.0)
        expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        assert lr_factor(cfg, epoch, total) == pytest.approx(expected, rel=1e-12)
    assert lr_factor(cfg, 0.0, total) == pytest.approx(1.0)
    assert lr_factor(cfg, 5.0, total) == pytest.approx(0.55)
    assert lr_factor(cfg, 10.0, total) == pytest.approx(0.1)


@pytest.mark.parametrize("kind", ["constant", "step", "cosine"])
def test_linear_warmup_reaches_one_at_warmup_epochs(kind):
    cfg = ScheduleConfig(kind=kind, warmup_epochs=4.0, step_size=100)
    assert lr_factor(cfg, 0.0, 20) == 0.0
    assert lr_factor(cfg, 1.0, 20) == pytest.approx(0.25)
    assert lr_factor(cfg, 2.0, 20) == pytest.approx(0.5)
    assert lr_factor(cfg, 4.0, 20) == pytest.approx(1.0)
    if kind != "cosine":
        assert lr_factor(cfg, 6.0, 20) == pytest.approx(1.0)
    # a step starting at `epoch` and lasting `step_size` epochs uses the rate at its end during warm-up
    assert lr_factor(cfg, 0.0, 20, step_size=0.5) == pytest.approx(0.125)


def test_cosine_after_warmup_decays_over_the_remaining_epochs():
    cfg = ScheduleConfig(kind="cosine", warmup_epochs=2.0, min_factor=0.0)
    assert lr_factor(cfg, 2.0, 12) == pytest.approx(1.0)
    assert lr_factor(cfg, 7.0, 12) == pytest.approx(0.5)
    assert lr_factor(cfg, 12.0, 12) == pytest.approx(0.0, abs=1e-12)
