"""Quantization-aware training (H2): each member's forward weights on its own grid, the STE, the contract."""

import pytest
import torch

from tamenet.api import fit
from tamenet.compress.qat import WeightQuantizer
from tamenet.compress.quantize import fake_quantize_tensor
from tamenet.config import Recipe, RecipeError, parse
from tamenet.nn import Linear
from tamenet.select.search import split_grid
from tamenet.trained import load_run

from test_training import QUIET, _assert_population_equals_separate_runs, _with

BASE = {
    "data": {"name": "moons", "n_samples": 200, "noise": 0.3},
    "model": {"widths": [16, 16], "activation": "relu"},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 3},
    "track": QUIET,
    "seed": 0,
}


def _layers(model):
    return [m for m in model.modules() if isinstance(m, Linear)]


def test_each_member_computes_with_its_own_grid_and_bits_zero_stays_float():
    bits = [0, 8, 4, 2]
    result = fit(_with(BASE, **{"quantize.bits": bits, "seed": [0, 0, 0, 0]}))
    for layer in _layers(result.model):
        used = layer.effective_weight().detach()
        assert torch.equal(used[0], layer.weight.detach()[0])  # bits 0: the float weights
        for m, b in enumerate(bits[1:], start=1):
            assert torch.equal(used[m], fake_quantize_tensor(layer.weight.detach()[m:m + 1], b, member_axis=True)[0])
            assert len(torch.unique(used[m])) <= 2 ** b - 1  # symmetric: 2^b - 1 levels
    test = [m["test"]["accuracy"] for m in result.summary["per_member"]]
    assert test[3] < test[0]  # 2-bit weights lose accuracy on moons after 3 epochs


def test_the_straight_through_estimator_reaches_the_stored_weights():
    layer = Linear(2, 5, 3)
    torch.nn.init.normal_(layer.weight)
    layer.set_weight_quant(WeightQuantizer([4, 8], symmetric=False, per_channel=True, channel_axis=-1))
    x = torch.randn(2, 7, 5)
    layer(x).square().sum().backward()
    effective = layer.effective_weight().detach().requires_grad_(True)
    torch.bmm(x, effective).square().sum().backward()
    # the range comes from W itself, so every weight is inside it: the gradient of the identity
    assert torch.allclose(layer.weight.grad, effective.grad)


def test_a_population_of_bit_widths_equals_separate_runs():
    bits = [8, 6, 4]
    base = _with(BASE, **{"quantize.per_channel": True, "quantize.symmetric": False})
    _assert_population_equals_separate_runs(
        _with(base, **{"quantize.bits": bits}),
        [_with(base, **{"quantize.bits": b}) for b in bits],
    )


def test_cnn_weights_are_quantized_per_output_channel_and_the_run_reloads(tmp_path):
    recipe = {"data": {"name": "digits"}, "model": {"kind": "cnn", "channels": [4, 4], "widths": [16]},
              "train": {"epochs": 1, "batch_size": 128}, "quantize": {"bits": [4, 8], "per_channel": True},
              "seed": [0, 1], "track": {**QUIET, "checkpoint": True}}
    result = fit(recipe, out=tmp_path / "run")
    convs = [m for m in result.model.modules() if hasattr(m, "effective_weight") and m.weight.dim() == 5]
    assert convs
    for conv in convs:
        used = conv.effective_weight().detach()
        for channel in range(used.shape[1]):
            assert len(torch.unique(used[0, channel])) <= 15
    loaded = load_run(tmp_path / "run")
    X = torch.randn(6, 64)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(X), result.model(X))
    plain = loaded.to_torch(0)  # the exported convolutions hold the dequantized weights
    exported = [p.detach() for name, p in plain.named_parameters() if name.endswith("weight") and p.dim() == 4]
    assert len(exported) == len(convs)
    for w, conv in zip(exported, convs):
        assert torch.equal(w, conv.effective_weight().detach()[0])


def test_bits_is_a_whole_number_grid_key():
    structures, numbers = split_grid(parse(Recipe, BASE), {"quantize.bits": [8, 6, 4]})
    assert structures == [{}] and len(numbers) == 3


@pytest.mark.parametrize("bits, words", [
    (1, "quantize.bits: expected 0 (off) or a bit width in [2, 16]"),
    (17, "quantize.bits: expected a value <= 16"),
    (-2, "quantize.bits: expected a value >= 0"),
    (4.5, "quantize.bits"),
])
def test_bad_bit_widths_are_refused_by_name(bits, words):
    with pytest.raises(RecipeError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse(Recipe, _with(BASE, **{"quantize.bits": bits}))


def test_an_unknown_layer_lists_the_quantizable_ones():
    with pytest.raises(RecipeError, match=r"quantize.layers: unknown weight layer\(s\) \['hidden.9.weight'\]"):
        fit(_with(BASE, **{"quantize.bits": 8, "quantize.layers": ["hidden.9.weight"]}))
