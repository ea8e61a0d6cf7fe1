"""The distillation loss against its formula and Hinton et al.'s two limits."""

import pytest
import torch
import torch.nn.functional as F

from tamenet.compress.distill import distillation_loss, soft_targets


def _logits(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_loss_is_the_formula_for_each_member():
    M, B, C = 3, 5, 4
    zs, zt = _logits(0, (M, B, C)), _logits(1, (B, C))
    y = torch.tensor([0, 3, 1, 1, 2])
    T = torch.tensor([1.0, 4.0, 20.0], dtype=torch.float64)
    alpha = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64)
    got = distillation_loss(zs, zt, y, temperature=T, alpha=alpha)
    for m in range(M):
        t, a = T[m].item(), alpha[m].item()
        kl = F.kl_div(F.log_softmax(zs[m] / t, -1), F.softmax(zt / t, -1), reduction="batchmean")
        want = a * t * t * kl + (1 - a) * F.cross_entropy(zs[m], y)
        assert got[m].item() == pytest.approx(want.item(), rel=1e-12)


def test_alpha_zero_is_plain_cross_entropy_and_a_perfect_student_has_zero_soft_loss():
    zt = _logits(2, (6, 3))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    one = torch.ones(1, dtype=torch.float64)
    assert distillation_loss(zt[None], zt, y, temperature=one * 3, alpha=one).item() == pytest.approx(0.0, abs=1e-12)
    assert distillation_loss(zt[None], zt, y, temperature=one * 3, alpha=one * 0).item() == pytest.approx(
        F.cross_entropy(zt, y).item())


def _soft_gradient(zs, zt, T):
    zs = zs.clone().requires_grad_(True)
    one = torch.ones(1, dtype=torch.float64)
    distillation_loss(zs[None], zt, torch.zeros(zs.shape[0], dtype=torch.long), temperature=one * T,
                      alpha=one).backward()
    return zs.grad


def test_t_squared_keeps_the_soft_gradient_size_constant_as_t_grows():
    zs, zt = _logits(3, (8, 10)), _logits(4, (8, 10))
    norms = [_soft_gradient(zs, zt, T).norm().item() for T in (5.0, 20.0, 100.0, 1000.0)]
    assert max(norms) / min(norms) < 1.1  # without T^2 they would shrink by a factor of 200
    assert _soft_gradient(zs, zt, 1000.0).norm().item() > 0.9 * _soft_gradient(zs, zt, 5.0).norm().item()


def test_large_t_reduces_to_matching_zero_mean_logits():
    # Hinton et al. 2015, section 2.1: dL/dz_s -> ((z_s - mean z_s) - (z_t - mean z_t)) / (C B) per row
    B, C = 8, 10
    zs, zt = _logits(5, (B, C)), _logits(6, (B, C))
    limit = ((zs - zs.mean(-1, keepdim=True)) - (zt - zt.mean(-1, keepdim=True))) / (C * B)
    gaps = [((_soft_gradient(zs, zt, T) - limit).abs().max() / limit.abs().max()).item() for T in (1e2, 1e3, 1e4)]
    assert gaps[-1] < 1e-3
    assert gaps[0] / gaps[1] == pytest.approx(10, rel=0.05) and gaps[1] / gaps[2] == pytest.approx(10, rel=0.05)  # O(1/T)


def test_soft_targets_per_member_temperature_and_teacher_ensembles():
    zt = _logits(7, (2, 5, 3))  # one teacher per member
    q = soft_targets(zt, torch.tensor([1.0, 10.0], dtype=torch.float64))
    assert torch.allclose(q[0], torch.softmax(zt[0], -1)) and torch.allclose(q[1], torch.softmax(zt[1] / 10, -1))
    assert torch.allclose(q.sum(-1), torch.ones(2, 5, dtype=torch.float64))


def test_bad_temperatures_and_shares_are_refused():
    zs, zt, y = _logits(0, (2, 3, 4)), _logits(1, (3, 4)), torch.tensor([0, 1, 2])
    ok = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(zs, zt, y, temperature=ok * 0, alpha=ok / 2)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        distillation_loss(zs, zt, y, temperature=ok, alpha=ok * 2)
    with pytest.raises(ValueError, match="one temperature and one alpha per member"):
        distillation_loss(zs, zt, y, temperature=torch.ones(3), alpha=ok)
