"""Population convolutions and pooling against PyTorch's functional ops run member by member."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tamenet.nn import Conv, conv, global_avg_pool, pool
from tamenet.nn.conv import member_channels

M, B = 3, 4
CONV = {1: F.conv1d, 2: F.conv2d}
SPATIAL = {1: (11,), 2: (7, 6)}


def _member_inputs(dims: int, c_in: int) -> torch.Tensor:
    return torch.randn(M, B, c_in, *SPATIAL[dims], dtype=torch.float64, requires_grad=True)


def _layer(dims: int, c_in: int, c_out: int, k: int, **kw) -> Conv:
    layer = Conv(M, c_in, c_out, k, dims=dims, **kw).double()
    with torch.no_grad():
        layer.weight.normal_()
        if layer.bias is not None:
            layer.bias.normal_()
    return layer


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("k, stride, padding, bias", [(3, 1, 1, True), (3, 2, 0, True), (5, 2, 2, False), (1, 1, 0, True)])
def test_conv_equals_torch_conv_member_by_member_outputs_and_gradients(dims, k, stride, padding, bias):
    layer = _layer(dims, 2, 5, k, stride=stride, padding=padding, bias=bias)
    x = _member_inputs(dims, 2)
    out = layer(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    for m in range(M):
        xm = x.detach()[m].clone().requires_grad_(True)
        wm = layer.weight.detach()[m].clone().requires_grad_(True)
        bm = layer.bias.detach()[m].clone().requires_grad_(True) if bias else None
        ref = CONV[dims](xm, wm, bm, stride=stride, padding=padding)
        ref.backward(grad_out[m])
        torch.testing.assert_close(out[m], ref)
        torch.testing.assert_close(x.grad[m], xm.grad)
        torch.testing.assert_close(layer.weight.grad[m], wm.grad)
        if bias:
            torch.testing.assert_close(layer.bias.grad[m], bm.grad)
    assert out.shape[-dims:] == torch.Size(layer.output_size(s) for s in SPATIAL[dims])


@pytest.mark.parametrize("dims", [1, 2])
def test_shared_batch_equals_every_member_reading_its_own_copy(dims):
    layer = _layer(dims, 2, 4, 3, padding=1)
    shared = torch.randn(B, 2, *SPATIAL[dims], dtype=torch.float64, requires_grad=True)
    copies = shared.detach().expand(M, *shared.shape).clone().requires_grad_(True)
    out_shared, out_copies = layer(shared), layer(copies)
    torch.testing.assert_close(out_shared, out_copies)
    grad_out = torch.randn_like(out_shared)
    out_shared.backward(grad_out)
    weight_grad = layer.weight.grad.clone()
    layer.weight.grad = None
    out_copies.backward(grad_out)
    torch.testing.assert_close(weight_grad, layer.weight.grad)
    torch.testing.assert_close(shared.grad, copies.grad.sum(0))  # the shared input feeds every member


def test_stacked_convolutions_hand_members_on_without_a_copy():
    """A convolution's output already lies in the member-channel layout the next one reads."""
    first, second = _layer(2, 1, 3, 3, padding=1), _layer(2, 3, 3, 3, padding=1)
    h = first(_member_inputs(2, 1))
    assert member_channels(h).data_ptr() == h.data_ptr()
    assert member_channels(torch.relu(h)).is_contiguous()  # element-wise ops keep the layout
    second(h)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_equals_torch_pooling_per_member(dims, kind):
    x = _member_inputs(dims, 3)
    out = pool(x, kind, 2)
    reference = {(1, "max"): F.max_pool1d, (2, "max"): F.max_pool2d, (1, "avg"): F.avg_pool1d, (2, "avg"): F.avg_pool2d}
    for m in range(M):
        torch.testing.assert_close(out[m], reference[dims, kind](x[m], 2, 2))
    assert pool(x, "none") is x


def test_global_average_pooling_is_the_mean_over_positions():
    x = _member_inputs(2, 3)
    torch.testing.assert_close(global_avg_pool(x), x.mean(dim=(3, 4)))
    torch.testing.assert_close(global_avg_pool(x[..., 0]), x[..., 0].mean(dim=3))


def test_wrong_shapes_and_values_say_what_was_expected():
    layer = Conv(M, 2, 4, 3, dims=1)
    with pytest.raises(ValueError, match=r"expects inputs \[B, 2, L\] or \[3, B, 2, L\], got \[4, 5, 11\]"):
        layer(torch.randn(4, 5, 11))
    with pytest.raises(ValueError, match=r"got \[2, 4, 2, 11\]"):  # 2 members' inputs for a population of 3
        layer(torch.randn(2, 4, 2, 11))
    with pytest.raises(ValueError, match="dims 1 .* or 2 .*, got 3"):
        Conv(M, 2, 4, 3, dims=3)
    with pytest.raises(ValueError, match="kernel_size to be an integer >= 1, got 0"):
        Conv(M, 2, 4, 0, dims=2)
    with pytest.raises(ValueError, match="unknown pool 'mean'.*valid: none, max, avg"):
        pool(torch.randn(M, B, 2, 8), "mean")
    with pytest.raises(ValueError, match=r"\[M, B, C, \*spatial\].*got \[3, 4, 2\]"):
        global_avg_pool(torch.randn(M, B, 2))


def test_conv_direct_call_matches_the_module():
    layer = _layer(1, 2, 4, 3, padding=1, stride=2)
    x = _member_inputs(1, 2)
    torch.testing.assert_close(conv(x, layer.weight, layer.bias, stride=2, padding=1), layer(x))
