"""Fake quantization against the lecture's formulas: r = S (Q - Z), the integer range, the STE."""

import pytest
import torch

from tamenet.compress.quantize import (MinMaxObserver, check_bits, dequantize, fake_quantize, fake_quantize_tensor,
                                       integer_range, observed_range, quant_params, quantize)


def _values(seed=0, shape=(4, 7, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 0.7


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_round_trip_error_is_at_most_half_a_step_and_q_stays_in_range(symmetric, bits):
    r = _values()
    lo, hi = observed_range(r)
    p = quant_params(lo, hi, bits, symmetric=symmetric)
    q = quantize(r, p)
    q_min, q_max = integer_range(bits, symmetric=symmetric)
    assert torch.equal(q, torch.round(q))  # integers
    assert q.min() >= q_min and q.max() <= q_max
    err = (dequantize(q, p) - r).abs()
    assert torch.all(err <= p.scale / 2 + 1e-12)
    assert torch.equal(dequantize(q, p), p.scale * (q - p.zero_point))  # r_hat = S (Q - Z)


def test_symmetric_has_zero_point_zero_and_a_grid_symmetric_about_zero():
    r = _values()
    p = quant_params(*observed_range(r), 8, symmetric=True)
    assert torch.all(p.zero_point == 0)
    assert torch.allclose(p.clip_low, -p.clip_high)
    assert torch.allclose(p.scale, r.abs().max() / 127)  # S = max|r| / (2^(b-1) - 1)
    assert integer_range(8, symmetric=True) == (torch.tensor(-127.0, dtype=torch.float64), torch.tensor(127.0, dtype=torch.float64))


def test_asymmetric_maps_the_range_onto_0_to_2b_minus_1_and_zero_is_exact():
    r = torch.tensor([0.5, 1.0, 2.5, 3.0], dtype=torch.float64)  # all positive: the range widens to hold 0
    p = quant_params(*observed_range(r), 4, symmetric=False)
    assert torch.allclose(p.scale, torch.tensor(3.0 / 15, dtype=torch.float64))
    assert p.zero_point.item() == 0
    r = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    p = quant_params(*observed_range(r), 8, symmetric=False)
    assert torch.allclose(p.scale, torch.tensor(3.0 / 255, dtype=torch.float64))
    assert p.zero_point.item() == round(1.0 / (3.0 / 255))
    assert dequantize(quantize(torch.zeros(1, dtype=torch.float64), p), p).item() == 0.0
    assert quantize(r, p).tolist() == [0.0, p.zero_point.item(), 255.0]


def test_per_channel_ranges_are_taken_per_output_channel():
    w = _values(shape=(6, 3))  # [in, out]; one channel with a far larger range
    w[:, 1] *= 100
    per_tensor = fake_quantize_tensor(w, 4, granularity="tensor")
    per_channel = fake_quantize_tensor(w, 4, granularity="channel", channel_axis=-1)
    lo, hi = observed_range(w, granularity="channel", channel_axis=-1)
    assert lo.shape == (1, 3)
    assert torch.equal(lo[0], w.amin(0)) and torch.equal(hi[0], w.amax(0))
    small = [0, 2]
    assert (per_channel - w)[:, small].abs().max() < (per_tensor - w)[:, small].abs().max() / 10


def test_one_bit_width_per_member_equals_each_member_alone():
    w = _values()  # [M=4, in, out]
    bits = torch.tensor([8, 6, 4, 2])
    together = fake_quantize_tensor(w, bits, member_axis=True, symmetric=False, granularity="channel")
    for m, b in enumerate(bits.tolist()):
        alone = fake_quantize_tensor(w[m], b, symmetric=False, granularity="channel")
        assert torch.equal(together[m], alone)
    for channel in range(w.shape[-1]):  # 2 bits: at most 4 levels in each output channel
        assert len(torch.unique(together[3][:, channel])) <= 4
    errors = [(together[m] - w[m]).abs().mean().item() for m in range(4)]
    assert errors == sorted(errors)  # fewer bits, larger error


def test_ste_gradient_is_one_inside_the_clipping_range_and_zero_outside():
    calib = torch.linspace(-1, 1, 11, dtype=torch.float64)
    p = quant_params(*observed_range(calib), 4, symmetric=True)
    half = p.scale.item() / 2  # the clamp binds from half a step beyond the grid's ends
    r = torch.tensor([-3.0, -1.0 - half * 1.01, -1.0 - half * 0.99, -0.33, 0.0, 0.52, 1.0, 1.0 + half * 0.99,
                      1.0 + half * 1.01, 7.0], dtype=torch.float64, requires_grad=True)
    out = fake_quantize(r, p)
    out.backward(torch.full_like(r, 2.5))
    assert r.grad.tolist() == [0.0, 0.0, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 0.0, 0.0]
    # PyTorch's own fake quantization (its reference) has the same mask and the same values
    ref = r.detach().clone().float().requires_grad_(True)
    ref_out = torch.fake_quantize_per_tensor_affine(ref, p.scale.item(), int(p.zero_point.item()), -7, 7)
    ref_out.backward(torch.full_like(ref, 2.5))
    assert ref.grad.tolist() == r.grad.tolist()
    assert torch.allclose(ref_out.double(), out.detach(), atol=1e-6)
    assert torch.equal(out.detach(), dequantize(quantize(r.detach(), p), p))
    assert out[0].item() == p.clip_low.item() and out[-1].item() == p.clip_high.item()  # clipped outside


def test_observer_keeps_extremes_or_a_moving_average():
    batches = [torch.tensor([0.0, 1.0]), torch.tensor([-2.0, 0.5]), torch.tensor([0.0, 3.0])]
    extreme, average = MinMaxObserver(), MinMaxObserver(momentum=0.5)
    for b in batches:
        extreme.observe(b)
        average.observe(b)
    assert extreme.low.item() == -2.0 and extreme.high.item() == 3.0
    assert average.low.item() == pytest.approx((0 + 0.5 * (-2 - 0)) * 0.5)  # -1, then halfway to 0
    assert average.high.item() == pytest.approx(0.5 * (0.5 * (1 + 0.5) + 3.0))
    p = extreme.params(8, symmetric=False)
    assert torch.allclose(p.clip_low, torch.tensor(-2.0), atol=p.scale.item())


@pytest.mark.parametrize("bits", [1, 17, 4.5, [8, 0]])
def test_bit_widths_outside_2_to_16_are_refused(bits):
    with pytest.raises(ValueError, match=r"integer in \[2, 16\]"):
        check_bits(bits)


def test_bad_options_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="granularity"):
        observed_range(torch.ones(3), granularity="row")
    with pytest.raises(ValueError, match="member_axis"):
        fake_quantize_tensor(torch.ones(3, 2), torch.tensor([8, 4, 2]))
    with pytest.raises(ValueError, match="no rows"):
        MinMaxObserver().params(8, symmetric=True)
    with pytest.raises(ValueError, match="momentum"):
        MinMaxObserver(momentum=0.0)
