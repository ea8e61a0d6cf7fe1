"""Behaviour of the per-member gradient transforms: each member is clipped as if it trained alone."""

from __future__ import annotations

import pytest
import torch

from tamenet.models import MLP, Wrapped
from tamenet.transforms import CLIPPERS, adaptive_clip, clip_by_norm, clip_by_value, global_norm

M = 3


def _population(seed=0):
    model = MLP(5, 3, widths=[4, 6], seeds=[0, 1, 2], norm="layer")
    roles = model.param_roles()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for r in roles:  # non-trivial biases and norm parameters too
            r.param.copy_(torch.randn(r.param.shape, generator=g))
    return roles


def _grads(roles, member_scale, seed=1):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor(member_scale)
    return [torch.randn(r.param.shape, generator=g) * scale.view(-1, *([1] * (r.param.dim() - 1))) for r in roles]


def _member_norm(grads, m):
    return torch.sqrt(sum(g[m].square().sum() for g in grads)).item()


def test_clip_by_norm_equals_clip_grad_norm_per_member():
    roles = _population()
    grads = _grads(roles, [1.0, 0.2, 5.0])
    max_norm = torch.tensor([1.0, 10.0, 0.5])
    norms = [_member_norm(grads, m) for m in range(M)]
    assert norms[0] > 1.0 and norms[1] < 10.0 and norms[2] > 0.5  # two clipped, one below threshold
    out = clip_by_norm(roles, grads, max_norm)
    torch.testing.assert_close(global_norm(roles, grads), torch.tensor(norms), rtol=1e-6, atol=0)
    for m in range(M):
        ref = [torch.nn.Parameter(r.param[m].detach().clone()) for r in roles]
        for p, g in zip(ref, grads):
            p.grad = g[m].clone()
        total = torch.nn.utils.clip_grad_norm_(ref, max_norm[m].item())
        assert total.item() == pytest.approx(norms[m], rel=1e-6)
        for p, o in zip(ref, out):
            torch.testing.assert_close(o[m], p.grad, rtol=1e-6, atol=1e-7)
    for o, g in zip(out, grads):  # the member below its threshold is untouched
        assert torch.equal(o[1], g[1])
    for m in (0, 2):
        assert _member_norm(out, m) == pytest.approx(max_norm[m].item(), rel=1e-5)


def test_clip_by_norm_never_mixes_members():
    roles = _population()
    grads = _grads(roles, [1.0, 0.2, 5.0])
    max_norm = torch.tensor([1.0, 10.0, 0.5])
    out = clip_by_norm(roles, grads, max_norm)
    louder = [g.clone() for g in grads]
    for g in louder:
        g[2] *= 1000.0  # only member 2's gradient changes
    out_louder = clip_by_norm(roles, louder, max_norm)
    for a, b in zip(out, out_louder):
        assert torch.equal(a[:2], b[:2])
    assert _member_norm(out_louder, 2) == pytest.approx(0.5, rel=1e-5)


def test_clip_by_norm_of_a_wrapped_module_equals_clip_grad_norm():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    roles = Wrapped(module).param_roles()
    grads = [torch.randn_like(r.param) for r in roles]
    out = clip_by_norm(roles, grads, torch.tensor([0.3]))
    ref = [torch.nn.Parameter(r.param.detach().clone()) for r in roles]
    for p, g in zip(ref, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(ref, 0.3)
    for o, p in zip(out, ref):
        assert o.shape == p.shape
        torch.testing.assert_close(o, p.grad, rtol=1e-6, atol=1e-7)


def test_clip_by_value_equals_clip_grad_value_per_member():
    roles = _population()
    grads = _grads(roles, [1.0, 1.0, 1.0])
    max_value = torch.tensor([0.1, 0.5, 2.0])
    out = clip_by_value(roles, grads, max_value)
    for m in range(M):
        ref = [torch.nn.Parameter(r.param[m].detach().clone()) for r in roles]
        for p, g in zip(ref, grads):
            p.grad = g[m].clone()
        torch.nn.utils.clip_grad_value_(ref, max_value[m].item())
        for p, o in zip(ref, out):
            assert torch.equal(o[m], p.grad)
        assert max(o[m].abs().max().item() for o in out) <= max_value[m].item()
    # not vacuous: member 0 (threshold 0.1) had components to clip
    assert sum(int((o[0] != g[0]).sum()) for o, g in zip(out, grads)) > 0


def _adaptive_reference(roles, grads, clip, eps=1e-3):
    """The unit-wise rule written out: unit i of a weight [out, in] is row i; a 1-D parameter is one unit (NFNets)."""
    out = []
    for r, g in zip(roles, grads):
        res = torch.empty_like(g)
        for m in range(g.shape[0]):
            w_m, g_m = r.param.detach()[m], g[m]
            if g_m.dim() == 1:
                w_m, g_m = w_m.unsqueeze(0), g_m.unsqueeze(0)
            else:  # tamenet's W is [in, out]: unit i is column i
                w_m, g_m = w_m.T, g_m.T
            for i in range(g_m.shape[0]):
                w_norm = w_m[i].norm().item()
                g_norm = g_m[i].norm().item()
                max_norm = clip[m].item() * max(w_norm, eps)
                factor = 1.0 if g_norm == 0 else min(1.0, max_norm / g_norm)
                (res[m].T if res[m].dim() == 2 else res[m].view_as(g_m))[i] = g_m[i] * factor
        out.append(res)
    return out


def test_adaptive_clip_matches_the_unit_wise_formula():
    roles = _population()
    by_name = {r.name: r for r in roles}
    with torch.no_grad():
        by_name["hidden.1.weight"].param[0, :, 2].zero_()  # a zero-weight unit: threshold lambda * eps
        by_name["hidden.0.bias"].param[1].zero_()  # a zero bias vector: one unit, threshold lambda * eps
    grads = _grads(roles, [1.0, 0.5, 2.0])
    clip = torch.tensor([0.01, 0.1, 1.0])
    out = adaptive_clip(roles, grads, clip, eps=1e-3)
    ref = _adaptive_reference(roles, grads, clip, eps=1e-3)
    for o, e in zip(out, ref):
        torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-8)

    names = [r.name for r in roles]
    zero_unit = out[names.index("hidden.1.weight")][0, :, 2]
    assert zero_unit.norm().item() == pytest.approx(0.01 * 1e-3, rel=1e-5)  # eps branch
    zero_bias = out[names.index("hidden.0.bias")][1]
    assert zero_bias.norm().item() == pytest.approx(0.1 * 1e-3, rel=1e-5)
    # the test is not vacuous: some units were clipped, some kept as they were
    changed = sum(int((o != g).any(dim=1).sum()) for o, g in zip(out, grads) if g.dim() == 3)  # per unit (column)
    kept = sum(int((o == g).all(dim=1).sum()) for o, g in zip(out, grads) if g.dim() == 3)
    assert changed > 0 and kept > 0


def test_adaptive_clip_never_mixes_members():
    roles = _population()
    grads = _grads(roles, [1.0, 0.5, 2.0])
    clip = torch.tensor([0.01, 0.1, 1.0])
    out = adaptive_clip(roles, grads, clip)
    with torch.no_grad():
        for r in roles:
            r.param[0] *= 50.0  # member 0's weights change
    louder = [g.clone() for g in grads]
    for g in louder:
        g[0] *= 100.0
    out2 = adaptive_clip(roles, louder, clip)
    for a, b in zip(out, out2):
        assert torch.equal(a[1:], b[1:])


def test_clippers_registry_dispatches_to_the_transforms():
    roles = _population()
    grads = _grads(roles, [1.0, 0.5, 2.0])
    t = torch.tensor([0.3, 0.2, 0.1])
    for name, fn in [("norm", clip_by_norm), ("value", clip_by_value)]:
        for a, b in zip(CLIPPERS[name](roles, grads, t, 1e-3), fn(roles, grads, t)):
            assert torch.equal(a, b)
    for a, b in zip(CLIPPERS["adaptive"](roles, grads, t, 1e-2), adaptive_clip(roles, grads, t, eps=1e-2)):
        assert torch.equal(a, b)
