"""L2-SP against its formula and autograd."""

import pytest
import torch

from tamenet.compress.transfer import add_l2_sp_gradients_, l2_sp_penalty


def _tensor(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_penalty_is_the_formula_per_member_and_its_gradient_matches_autograd():
    alpha, beta = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.1], dtype=torch.float64)
    w, source, head = _tensor(0, (3, 4, 5)), _tensor(1, (3, 4, 5)), _tensor(2, (3, 5, 2))
    got = l2_sp_penalty([(w, source)], [head], alpha=alpha, beta=beta)
    for m in range(3):
        want = alpha[m] / 2 * ((w[m] - source[m]) ** 2).sum() + beta[m] / 2 * (head[m] ** 2).sum()
        assert got[m].item() == pytest.approx(want.item(), rel=1e-12)

    pw, ph = torch.nn.Parameter(w.clone()), torch.nn.Parameter(head.clone())
    l2_sp_penalty([(pw, source)], [ph], alpha=alpha, beta=beta).sum().backward()
    auto_w, auto_h = pw.grad.clone(), ph.grad.clone()
    pw.grad, ph.grad = torch.zeros_like(w), torch.zeros_like(head)
    add_l2_sp_gradients_([(pw, source)], [ph], alpha=alpha, beta=beta)
    assert torch.allclose(pw.grad, auto_w, rtol=1e-12) and torch.allclose(ph.grad, auto_h, rtol=1e-12)


def test_at_the_source_weights_only_the_head_is_penalized():
    w = _tensor(3, (2, 3, 3))
    one = torch.ones(2, dtype=torch.float64)
    assert torch.all(l2_sp_penalty([(w, w.clone())], [], alpha=one * 7, beta=one) == 0)


def test_negative_strengths_are_refused():
    w = _tensor(4, (1, 2))
    with pytest.raises(ValueError, match="L2-SP strengths must be >= 0"):
        l2_sp_penalty([(w, w)], [], alpha=torch.tensor([-1.0]), beta=torch.tensor([0.0]))
