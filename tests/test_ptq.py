"""Quantized activations (QAT and PTQ), `tamenet quantize` and the deployment formats (H2), against the formulas."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tamenet.api import fit
from tamenet.cli import main
from tamenet.compress.activations import OBSERVERS, ActivationQuantizer, activation_quantizers
from tamenet.compress.ptq import Scheme, quantize_run
from tamenet.compress.quantize import MinMaxObserver, fake_quantize, quant_params, quantize
import dataclasses

from tamenet.config import QuantizeConfig
from tamenet.models.export import export_member
from tamenet.nn import Linear
from tamenet.trained import evaluate_run, load_run

from test_training import QUIET, _assert_population_equals_separate_runs, _with

pytestmark = pytest.mark.usefixtures("one_thread")

MLP = {
    "data": {"name": "moons", "n_samples": 240, "noise": 0.25},
    "model": {"widths": [12], "activation": "relu", "norm": "none", "dropout": 0.0},
    "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 32, "epochs": 4},
    "track": {**QUIET, "checkpoint": True},
    "seed": 0,
}


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("ptq")
        fit(MLP, out=root / "run")
    finally:
        torch.set_num_threads(threads)
    return root / "run"


# ----------------------------------------------------------------------------------------- activation quantizer
@pytest.mark.parametrize("symmetric", [True, False])
def test_activation_round_trip_is_within_half_a_step_inside_the_range(symmetric):
    torch.manual_seed(0)
    q = ActivationQuantizer([8, 4, 0], symmetric=symmetric)
    x = torch.randn(3, 50, 7) * torch.tensor([1.0, 3.0, 2.0]).view(3, 1, 1) + 0.5
    q.eval()
    q.calibrating = True
    out = q(x)
    for m, bits in enumerate([8, 4]):
        params = quant_params(x[m].min(), x[m].max(), bits, symmetric=symmetric)
        if symmetric:
            assert params.zero_point.item() == 0
        # calibrated on x itself: every value lies inside the grid or within half a step of its ends
        # (asymmetric: Z = round(-lo / S) moves the grid by at most S / 2), so the error is at most S / 2
        assert (x[m] >= params.clip_low - params.scale / 2).all() and (x[m] <= params.clip_high + params.scale / 2).all()
        assert ((out[m] - x[m]).abs() <= params.scale / 2 * (1 + 1e-5)).all()
        Q = quantize(x[m], params)
        assert Q.min() >= params.q_min and Q.max() <= params.q_max
        assert len(torch.unique(out[m])) <= 2 ** bits
    assert torch.equal(out[2], x[2])  # bits 0: float


def test_observers_follow_their_formulas_and_freeze_in_eval_mode():
    a, b = torch.tensor([[-1.0, 2.0]]), torch.tensor([[-3.0, 1.0]])
    minmax = ActivationQuantizer([8], symmetric=False, observer="minmax", shared_ndim=2).train()
    moving = ActivationQuantizer([8], symmetric=False, observer="moving_average", shared_ndim=2).train()
    for q in (minmax, moving):
        q(a)
        q(b)
    assert (minmax.low.item(), minmax.high.item()) == (-3.0, 2.0)
    c = OBSERVERS["moving_average"]
    assert moving.low.item() == pytest.approx(-1.0 + c * (-3.0 + 1.0))
    assert moving.high.item() == pytest.approx(2.0 + c * (1.0 - 2.0))
    minmax.eval()(torch.tensor([[-100.0, 100.0]]))  # eval mode: a row outside the range does not move it
    assert (minmax.low.item(), minmax.high.item()) == (-3.0, 2.0)
    reference = MinMaxObserver(member_axis=True)
    for batch in (a, b):
        reference.observe(batch.unsqueeze(0))
    assert (reference.low.min().item(), reference.high.max().item()) == (-3.0, 2.0)


def test_the_observer_names_are_the_recipes_choices_and_the_commands():
    from tamenet.cli_quantize import OBSERVERS as CLI_OBSERVERS

    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(QuantizeConfig)}["observer"]
    assert list(OBSERVERS) == list(choices) == list(CLI_OBSERVERS)


def test_ste_of_an_activation_passes_inside_and_stops_outside():
    q = ActivationQuantizer([4], symmetric=False).eval()
    q.low.fill_(-1.0)
    q.high.fill_(1.0)
    x = torch.tensor([[-3.0, -0.5, 0.2, 0.9, 5.0]], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0]]


# ----------------------------------------------------------------------------------------- QAT with activations
def test_a_population_of_bit_widths_with_quantized_activations_equals_separate_runs():
    base = _with(MLP, **{"quantize.activations": True, "quantize.symmetric": False,
                         "quantize.observer": "moving_average", "train.epochs": 2})
    _assert_population_equals_separate_runs(_with(base, **{"quantize.bits": [8, 4]}),
                                            [_with(base, **{"quantize.bits": b}) for b in (8, 4)])


def _csv_with_an_outlying_validation_row(folder: Path) -> Path:
    """Rows of two features and a label, marked train / val / test; one validation row's x0 is 1000."""
    rng = np.random.default_rng(0)
    n = 90
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    marks = np.array(["train"] * 60 + ["val"] * 15 + ["test"] * 15)
    X[65, 0] = 1000.0
    lines = ["x0,x1,label,part"] + [f"{a},{b},{c},{d}" for (a, b), c, d in zip(X, y, marks)]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    return folder / "rows.csv"


def test_calibration_sees_training_rows_only_in_qat_and_in_ptq(tmp_path):
    file = _csv_with_an_outlying_validation_row(tmp_path)
    data = {"name": "csv", "path": str(file), "target": "label", "split": "part", "standardize": False}
    recipe = _with(MLP, data=data, **{"train.epochs": 2})
    rows = np.loadtxt(file, delimiter=",", skiprows=1, usecols=(0, 1))[:60]
    qat = fit(_with(recipe, **{"quantize.bits": 8, "quantize.activations": True}))
    first = activation_quantizers(qat.model)[0]
    assert first.low.item() == pytest.approx(rows.min()) and first.high.item() == pytest.approx(rows.max())
    fit(recipe, out=tmp_path / "float")
    result = quantize_run(tmp_path / "float", Scheme(8, activations=True))
    first = activation_quantizers(load_run(result.path).model)[0]
    assert first.high.item() == pytest.approx(rows.max()) and first.high.item() < 1000.0
    assert first.low.item() == pytest.approx(rows.min())
    assert result.scheme.describe() == "8-bit asymmetric per-tensor weights and activations"


# ----------------------------------------------------------------------------------------- post-training quantization
def _fake_quantized_forward(model, X_train: torch.Tensor, X: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """The one-hidden-layer MLP by hand: fq_a(x) @ fq_w(W) + b, ReLU, again; observers = min-max of the training
    inputs of each layer (one calibration batch), weights per output channel on their own range."""
    hidden, output = [m for m in model.modules() if isinstance(m, Linear)]

    def fq(r, lo, hi):
        return fake_quantize(r, quant_params(lo, hi, bits, symmetric=symmetric))

    def fq_weight(w):  # [in, out]: one range per output column
        return fq(w, w.amin(0, keepdim=True), w.amax(0, keepdim=True))

    w1, w2 = fq_weight(hidden.weight[0].detach()), fq_weight(output.weight[0].detach())
    b1, b2 = hidden.bias[0].detach(), output.bias[0].detach()
    lo1, hi1 = X_train.min(), X_train.max()
    h_train = torch.relu(fq(X_train, lo1, hi1) @ w1 + b1)
    lo2, hi2 = h_train.min(), h_train.max()
    return fq(torch.relu(fq(X, lo1, hi1) @ w1 + b1), lo2, hi2) @ w2 + b2


def test_a_quantized_run_evaluates_as_the_fake_quantized_model_and_leaves_its_source_alone(trained, tmp_path):
    from tamenet.data import prepare

    before = _files(trained)
    result = quantize_run(trained, Scheme(4, per_channel=True, activations=True), tmp_path / "q4")
    assert _files(trained) == before
    source = load_run(trained)
    data = prepare(source.recipe.data)
    with torch.no_grad():
        logits = _fake_quantized_forward(source.model, data.X_train, data.X_test, 4, symmetric=False)
    loss = F.cross_entropy(logits, data.y_test).item()
    accuracy = (logits.argmax(1) == data.y_test).float().mean().item()
    scores = evaluate_run(result.path)["test"]
    assert scores["loss"][0] == pytest.approx(loss, rel=1e-5)
    assert scores["accuracy"][0] == pytest.approx(accuracy)
    assert result.after["test"] == scores
    record = json.loads((result.path / "run.json").read_text())["quantized_from"]
    assert (record["bits"], record["scheme"], record["granularity"], record["activations"]) == (4, "asymmetric",
                                                                                                  "channel", True)
    assert record["source"] == str(trained) and record["calibration_rows"] == len(data.X_train)
    # storage: biases in float32, each layer's weights packed at 4 bits, 8 bytes per (S, Z): a range per output
    # channel of the weight and one for its input
    layers = [(2, 12), (12, 2)]
    expected = sum(4 * n_out + (4 * n_in * n_out + 7) // 8 + 8 * (n_out + 1) for n_in, n_out in layers)
    assert result.size == {"float32": 4 * sum(n_out * (n_in + 1) for n_in, n_out in layers), "quantized": expected}


def test_ptq_weights_are_fake_quantized_on_the_observers_range(trained, tmp_path):
    result = quantize_run(trained, Scheme(6, symmetric=True), tmp_path / "q6")
    quantized, source = load_run(result.path), load_run(trained)
    for layer, float_layer in zip([m for m in quantized.model.modules() if isinstance(m, Linear)],
                                  [m for m in source.model.modules() if isinstance(m, Linear)]):
        observer = MinMaxObserver(member_axis=True)
        observer.observe(float_layer.weight.detach())
        expected = fake_quantize(float_layer.weight.detach(), observer.params(6, symmetric=True))
        assert torch.equal(layer.effective_weight().detach(), expected)
        assert len(torch.unique(expected)) <= 2 ** 6 - 1
    assert not activation_quantizers(quantized.model)


def test_the_command_writes_a_run_that_predict_and_export_read(trained, tmp_path, capsys):
    out = tmp_path / "q8"
    assert main(["quantize", str(trained), "--bits", "8", "--activations", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy quantized" in text and "bytes in float32" in text and f"quantized run: {out}" in text
    quantized = load_run(out)
    plain = export_member(quantized.model, 0)
    X = torch.randn(16, 2)
    with torch.no_grad():
        torch.testing.assert_close(plain(X), quantized.model(X)[0], rtol=0, atol=1e-5)
    rows = tmp_path / "rows.csv"
    rows.write_text("x0,x1\n0.5,0.2\n-1.0,0.3\n")
    assert main(["predict", str(out), "--input", str(rows), "--output", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 3


# ----------------------------------------------------------------------------------------- deployment formats
def test_torchao_int8_outputs_are_within_the_int8_error_bound(tmp_path):
    pytest.importorskip("torchao", reason="int8 deployment needs the 'compress' extra (torchao)")
    from tamenet.compress.deploy import deploy_model, deploy_table, load_deployed

    result = fit(_with(MLP, **{"model.kind": "linear", "data.name": "digits", "data.n_samples": None,
                               "data.noise": None, "train.epochs": 2}))
    plain = export_member(result.model, 0)
    int8 = deploy_model(plain, "int8")
    X = torch.randn(32, 64)
    with torch.no_grad():
        error = (int8(X) - plain(X)).abs()
    linear = [m for m in plain.modules() if isinstance(m, torch.nn.Linear)][0]
    scale = linear.weight.detach().abs().amax(1) / 127  # one symmetric scale per output row
    bound = X.abs().sum(1, keepdim=True) * scale / 2  # |sum_i x_i (w_hat - w)_ji| <= sum_i |x_i| S_j / 2
    assert (error <= bound * (1 + 1e-4) + 1e-5).all()
    assert error.max() > 0  # the weights did change
    torch.save(int8.state_dict(), tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.equal(load_deployed(plain, "int8", tmp_path / "m.pt")(X), int8(X))
    wide = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    with torch.no_grad():
        labels = wide(X).argmax(1)
    table = {r["format"]: r for r in deploy_table(wide, X, labels, repeats=2)}
    assert list(table) == ["fp32", "int8", "fp16", "bf16"]
    assert table["fp32"]["metric"] == 1.0 and table["fp32"]["vs_fp32"] == 1.0
    assert table["int8"]["bytes"] < table["fp16"]["bytes"] < table["fp32"]["bytes"]
    assert table["fp16"]["bytes"] == table["bf16"]["bytes"]


@pytest.mark.parametrize("fmt, rel", [("fp16", 2e-3), ("bf16", 1.6e-2)])
def test_half_precision_casts_round_every_weight_to_its_format(fmt, rel, tmp_path):
    from tamenet.compress.deploy import HALF_DTYPES, deploy_model, load_deployed

    plain = torch.nn.Sequential(torch.nn.Linear(5, 3)).eval()
    model = deploy_model(plain, fmt)
    weight = model.model[0].weight
    assert weight.dtype == HALF_DTYPES[fmt]
    torch.testing.assert_close(weight.float(), plain[0].weight.detach().to(HALF_DTYPES[fmt]).float(), rtol=0, atol=0)
    X = torch.randn(4, 5)
    with torch.no_grad():
        out = model(X)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, plain(X), rtol=rel, atol=rel)
    torch.save(model.state_dict(), tmp_path / "h.pt")
    with torch.no_grad():
        assert torch.equal(load_deployed(plain, fmt, tmp_path / "h.pt")(X), out)
