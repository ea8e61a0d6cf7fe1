"""Backpropagation by hand (seed 002) against autograd through tamenet's population MLP.

For one hidden layer, y = W2 h + b2 with h = ReLU(z), z = W1 x + b1, and L = 1/2 (y - t)^2:

    dL/dy  = y - t                dL/dW2 = (y - t) h^T         dL/db2 = y - t
    dL/dh  = W2^T (y - t)         dL/dz  = dL/dh * 1[z > 0]
    dL/dW1 = dL/dz x^T            dL/db1 = dL/dz

tamenet's regression loss averages over the batch, so each per-sample term carries a factor 1/B.
"""

from __future__ import annotations

import pytest
import torch

from tamenet.models import MLP
from tamenet.train.losses import member_loss

M, F, H, B = 2, 4, 6, 7


def _model() -> MLP:
    model = MLP(F, 1, widths=[H], seeds=[11, 12], activation="relu").double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-zero biases so both b1 and the ReLU mask matter
        model.hidden[0].bias.copy_(0.5 * torch.randn(M, H, generator=g, dtype=torch.float64))
        model.output.bias.copy_(torch.randn(M, 1, generator=g, dtype=torch.float64))
    return model


def _hand_gradients(W1, b1, W2, b2, x, t):
    """The seed-002 formulas for one member, batch-averaged, without autograd. x [B, F], t [B]."""
    z = x @ W1.T + b1  # [B, H]
    h = torch.clamp_min(z, 0.0)
    y = (h @ W2.T + b2)[:, 0]  # [B]
    dy = (y - t) / len(t)  # dL/dy for the batch mean
    dW2 = dy[None, :] @ h  # sum_b (y_b - t_b) h_b^T / B -> [1, H]
    db2 = dy.sum().reshape(1)
    dh = dy[:, None] * W2  # W2^T (y - t) per sample -> [B, H]
    dz = dh * (z > 0).to(z.dtype)
    dW1 = dz.T @ x  # sum_b dz_b x_b^T -> [H, F]
    db1 = dz.sum(0)
    return {"hidden.0.weight": dW1, "hidden.0.bias": db1, "output.weight": dW2, "output.bias": db2}


@pytest.mark.parametrize("shared_batch", [True, False], ids=["shared-batch", "per-member-batch"])
def test_autograd_gradients_of_population_mlp_equal_hand_derived_backprop(shared_batch):
    model = _model()
    g = torch.Generator().manual_seed(5)
    if shared_batch:
        x = torch.randn(B, F, generator=g, dtype=torch.float64)
        t = torch.randn(B, generator=g, dtype=torch.float64)
        xs, ts = [x, x], [t, t]
    else:
        x = torch.randn(M, B, F, generator=g, dtype=torch.float64)
        t = torch.randn(M, B, generator=g, dtype=torch.float64)
        xs, ts = [x[0], x[1]], [t[0], t[1]]

    model.train()
    loss = member_loss(model(x), t, "regression")  # [M]
    loss.sum().backward()

    params = dict(model.named_parameters())
    assert not torch.equal(params["hidden.0.weight"][0], params["hidden.0.weight"][1])  # members differ
    for m in range(M):
        with torch.no_grad():
            # tamenet stores W [in, out] per member; the formulas use the lectures' W [out, in]
            W1, b1 = params["hidden.0.weight"][m].T, params["hidden.0.bias"][m]
            W2, b2 = params["output.weight"][m].T, params["output.bias"][m]
            z = xs[m] @ W1.T + b1
            assert 0 < int((z > 0).sum()) < z.numel()  # the ReLU mask is neither all-on nor all-off
            expected = _hand_gradients(W1, b1, W2, b2, xs[m], ts[m])
            # the loss itself is 1/2 mean (y - t)^2
            y = (torch.clamp_min(z, 0) @ W2.T + b2)[:, 0]
            torch.testing.assert_close(loss[m], 0.5 * ((y - ts[m]) ** 2).mean(), rtol=1e-12, atol=1e-12)
        for name, grad in expected.items():
            actual = params[name].grad[m]
            actual = actual.T if actual.dim() == 2 else actual
            torch.testing.assert_close(actual, grad, rtol=1e-10, atol=1e-12, msg=f"{name}, member {m}")


def test_member_gradients_do_not_leak_into_other_members():
    """dL_m/dtheta_k = 0 for k != m: backpropagating one member's loss leaves the others' .grad at zero."""
    model = _model()
    x = torch.randn(B, F, dtype=torch.float64)
    t = torch.randn(B, dtype=torch.float64)
    member_loss(model(x), t, "regression")[1].backward()
    for name, p in model.named_parameters():
        assert torch.count_nonzero(p.grad[0]) == 0, name
        assert torch.count_nonzero(p.grad[1]) > 0, name
