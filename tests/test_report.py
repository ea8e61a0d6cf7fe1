"""The overfitting report: its rules on constructed histories, its statistics against formulas and references,
and the page it writes for a run, a cross-validation and a search directory (`tamenet report`, `--no-report`)."""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from report_cases import ONSET, cli_dirs, constructed_run, overfitting_history, read, search_json
from tamenet.cli import main
from tamenet.config import ModelConfig
from tamenet.models import build_model
from tamenet.report import write_report
from tamenet.report.calibration import reliability, uncertainty_vs_error
from tamenet.report.rules import (diverged_finding, edge_finding, gap_finding, overfit_onset, smooth,
                                  underfit_finding)
from tamenet.report.weights import read_weights, weight_stats

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return cli_dirs(tmp_path_factory)


# ------------------------------------------------------------------ rules on constructed histories

@pytest.mark.parametrize("onset", [8, ONSET, 25])
def test_a_run_that_overfits_at_epoch_e_is_diagnosed_at_e(onset):
    train, val = overfitting_history(40, onset)
    assert overfit_onset(train, val) == onset


def test_the_onset_survives_noise_and_needs_training_loss_still_falling():
    train, val = overfitting_history(40, ONSET)
    noisy = [v + 0.003 * math.sin(7.3 * i) for i, v in enumerate(val)]  # +-0.003: below the rise per epoch
    assert overfit_onset(train, noisy) == ONSET
    assert overfit_onset(train, sorted(val, reverse=True)) is None  # validation loss keeps falling: no onset
    flat_then_up = [1.0] * ONSET + [1.0 + 0.01 * k for k in range(1, 41 - ONSET)]
    assert overfit_onset([1.0] * 12 + [1.0 + 0.01 * k for k in range(1, 29)], flat_then_up) is None  # both rise


def test_smoothing_is_a_centred_moving_average():
    assert smooth([1, 2, 3, 10], 3) == [1.5, 2.0, 5.0, 6.5]


def test_a_large_growing_gap_suggests_stronger_penalties_dropout_noise_and_earlier_stopping():
    train, val = overfitting_history(40, ONSET)
    found = gap_finding("m0", train, val, ONSET - 1, {"l2": 1e-3, "dropout": 0.2, "input_noise": 0.0, "patience": 20})
    text = "\n".join(found.suggestions)
    assert "--grid penalty.l2=0.003,0.01,0.03" in text
    assert "--grid model.dropout=0.3,0.4,0.5" in text
    assert "--grid train.input_noise=0.05,0.1,0.2" in text
    assert "--grid train.early_stopping.patience=5,10" in text
    same_gap = [v - 0.01 for v in val]  # a small, constant gap does not fire
    assert gap_finding("m0", same_gap, val, ONSET - 1, {}) is None


def test_high_training_loss_suggests_less_regularization_or_a_bigger_model():
    loss = [2.0 - 0.01 * e for e in range(30)]
    found = underfit_finding("m0", "classification", loss, [v + 0.05 for v in loss], [0.6] * 30,
                             {"l2": 0.03, "dropout": 0.5, "widths": [64, 64], "epochs": 50})
    text = "\n".join(found.suggestions)
    assert "--grid penalty.l2=0.01,0.003,0" in text
    assert "--grid model.dropout=0.25,0" in text
    assert "model.widths=[[128,128],[256,256],[64,64,64]]" in text
    assert "train.epochs=100" in text
    assert underfit_finding("m0", "classification", loss, loss, [0.95] * 30, {}) is None  # fits its data


def test_divergence_suggests_a_lower_learning_rate_or_clipping():
    found = diverged_finding("m3", [1.0, 0.5, float("nan")], 3, 0.3)
    assert "epoch 3" in found.evidence
    assert "--grid train.lr=0.1,0.03,0.01" in "\n".join(found.suggestions)
    assert "train.clip.max=1,5" in "\n".join(found.suggestions)
    blown = diverged_finding("m3", [1.0, 0.1, 2.0], None, 0.1)  # 20 times its minimum
    assert blown is not None and "20.0 times" in blown.evidence
    assert diverged_finding("m3", [1.0, 0.5, 0.4], None, 0.1) is None


def test_a_best_value_at_the_grids_edge_suggests_extending_the_grid_that_way():
    grid = [1e-4, 1e-3, 1e-2, 1e-1]
    assert "--grid penalty.l2=1,10,100" in edge_finding("penalty.l2", grid, 1e-1, log=True).suggestions[0]
    assert "--grid penalty.l2=1e-07,1e-06,1e-05" in edge_finding("penalty.l2", grid, 1e-4, log=True).suggestions[0]
    assert edge_finding("penalty.l2", grid, 1e-2, log=True) is None
    linear = edge_finding("model.dropout", [0.0, 0.1, 0.2], 0.2, log=False)
    assert "--grid model.dropout=0.3,0.4,0.5" in linear.suggestions[0]


# ------------------------------------------------------------------ statistics against formulas / references

def test_expected_calibration_error_matches_the_formula_and_detects_overconfidence():
    rng = np.random.default_rng(0)
    n, k = 4000, 3
    probs = rng.dirichlet(np.ones(k) * 0.5, size=n)
    y = np.array([rng.choice(k, p=p) for p in probs])  # labels drawn from the probabilities: calibrated
    table = reliability(probs, y, bins=10)
    conf, correct = probs.max(1), probs.argmax(1) == y
    index = np.clip(np.ceil(conf * 10).astype(int) - 1, 0, 9)  # bin b holds confidences in (b/10, (b+1)/10]
    ece = sum(abs(correct[index == b].mean() - conf[index == b].mean()) * (index == b).mean()
              for b in range(10) if (index == b).any())
    assert table["ece"] == pytest.approx(ece, abs=1e-12)
    assert table["ece"] < 0.03
    sharp = probs ** 4 / (probs ** 4).sum(1, keepdims=True)  # same arg max, overconfident
    assert reliability(sharp, y, bins=10)["ece"] > 0.1


def test_entropy_as_an_error_detector_is_the_mann_whitney_auroc():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=500)
    y = rng.integers(0, 4, size=500)
    stats = uncertainty_vs_error(probs, y)
    entropy = -(probs * np.log(probs)).sum(1)
    assert stats["auroc"] == pytest.approx(roc_auc_score(probs.argmax(1) != y, entropy), abs=1e-12)


def test_weight_stats_count_norms_exact_zeros_and_pruned_units():
    model = build_model(ModelConfig(widths=[5]), n_in=4, n_out=3, seeds=[0, 1])
    hidden = model.param_roles()[0].param  # [M, in, out]
    with torch.no_grad():
        hidden[1, :, 2] = 0.0  # member 1: unit 2's incoming weights all zero
        hidden[1, 0, 0] = 0.0  # and one more single zero
    rows = {(r["member"], r["layer"]): r for r in weight_stats(model)}
    assert rows[1, 0]["zero_share"] == pytest.approx(5 / 20)
    assert rows[1, 0]["unit_share"] == pytest.approx(1 / 5)
    assert rows[0, 0]["unit_share"] == 0.0
    assert rows[0, 0]["norm"] == pytest.approx(float(torch.linalg.norm(hidden[0].detach().double())))


# ------------------------------------------------------------------ the page for each directory

SECTION = re.compile(r'<section id="([\w-]+)">')


def _images_are_pngs(text: str) -> int:
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert images and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # nothing fetched
    return len(images)


def test_a_constructed_run_report_marks_the_onset_and_suggests_a_stronger_penalty(tmp_path):
    run = constructed_run(tmp_path / "made")
    assert write_report(run) == run / "report.html"
    text = read(run)
    assert SECTION.findall(text) == ["overview", "next", "curves"]
    assert f"overfitting starts at epoch {ONSET}" in text
    assert "large and growing gap" in text and "--grid penalty.l2=0.003,0.01,0.03" in text
    _images_are_pngs(text)


def test_a_run_report_holds_curves_weights_uncertainty_and_its_rules(dirs):
    text = read(dirs["run"])
    assert SECTION.findall(text) == ["overview", "next", "curves", "weights", "uncertainty"]
    assert 'id="member-picker"' in text and text.count('data-member="') == 2  # both members, one picker
    assert "Monte-Carlo dropout" in text and "ECE" in text
    weights = read_weights(dirs["run"])
    assert {r["epoch"] for r in weights} == {1, 2, 3, 4} and {r["member"] for r in weights} == {0, 1}
    assert _images_are_pngs(text) == 2 + 2 + 2  # 2 members' curves, histograms + norms, entropy + reliability


def test_a_cv_report_shows_every_fold(dirs):
    text = read(dirs["cv"])
    assert SECTION.findall(text) == ["overview", "next", "curves"]
    assert text.count('data-member="') == 3 and "stopping set" in text


def test_a_search_report_shows_path_halving_candidates_and_the_refit(dirs):
    text = read(dirs["search"])
    assert SECTION.findall(text) == ["path", "next", "halving", "candidates", "refit-overview", "refit-curves",
                                     "refit-weights", "refit-uncertainty"]
    result = search_json(dirs["search"])
    dropped = [r["candidate"] for r in result["candidates"] if r.get("dropped_at_epoch")]
    assert dropped and f"dropped candidates {result['halving'][0]['steps'][0]['candidates']}" in text
    assert text.count("<tr>") >= len(result["candidates"]) and 'class="sortable"' in text
    best = result["best"]["penalty.l2"]
    assert f"chosen: candidate {result['best']['candidate']} (penalty.l2={best})" in text
    edge = best in (min(result["grid"]["penalty.l2"]), max(result["grid"]["penalty.l2"]))
    assert ("best value at the grid&#x27;s edge" in text) == edge


def test_no_report_skips_the_page_and_tamenet_report_writes_it_later(dirs):
    assert dirs["cv_report_before"] is False  # cv ran with --no-report
    assert dirs["report_exit"] == 0 and (dirs["cv"] / "report.html").is_file()
    assert (dirs["run"] / "report.html").is_file() and (dirs["search"] / "report.html").is_file()  # the default


def test_report_of_a_directory_without_a_job_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds none of summary.json (a run), cv.json" in err


def test_an_ensemble_report_gives_the_ece_of_the_members_mean_probabilities(tmp_path):
    from report_cases import TINY, write_recipe
    from tamenet.data import prepare
    from tamenet.trained import load_run

    recipe = write_recipe(tmp_path / "e.yaml", {**TINY, "model": {"widths": [8], "dropout": 0.0},
                                                "train": {**TINY["train"], "epochs": 2}})
    assert main(["train", recipe, "--ensemble", "2", "--out", str(tmp_path / "ens")]) == 0
    text = read(tmp_path / "ens")
    assert SECTION.findall(text) == ["overview", "next", "curves", "weights", "uncertainty"]
    trained = load_run(tmp_path / "ens")
    data = prepare(trained.recipe.data)
    with torch.no_grad():
        probs = torch.softmax(trained.model(data.X_val), dim=-1).mean(0).numpy()
    ece = reliability(probs, np.asarray(data.y_val), bins=15)["ece"]
    assert f"ensemble of 2 (mean of the members&#x27; probabilities), on the {len(probs)} validation rows: ECE {ece:.4f}" in text


def test_a_resumed_run_keeps_its_weight_rows_once_per_epoch(tmp_path):
    from tamenet.api import fit

    recipe = {"data": {"name": "moons", "n_samples": 120}, "model": {"widths": [4]}, "train": {"epochs": 2},
              "track": {"tensorboard": False, "plots": False}, "seed": 0}
    fit(recipe, out=tmp_path / "r")
    fit(resume=tmp_path / "r", overrides=["train.epochs=4"])
    rows = read_weights(tmp_path / "r")
    assert [r["epoch"] for r in rows if r["layer"] == 0] == [1, 2, 3, 4]


def test_l1_leaves_exact_zeros_in_weights_csv_and_l2_does_not(tmp_path):
    from tamenet.api import fit

    recipe = {"data": {"name": "moons", "n_samples": 200}, "model": {"widths": [16]},
              "penalty": {"l1": [0.02, 0.0], "l2": [0.0, 0.02]}, "train": {"epochs": 15, "lr": 0.05},
              "track": {"tensorboard": False, "plots": False}, "seed": 0}
    fit(recipe, out=tmp_path / "l1l2")
    last = [r for r in read_weights(tmp_path / "l1l2") if r["epoch"] == 15 and r["layer"] == 0]
    share = {r["member"]: r["zero_share"] for r in last}
    assert share[0] > 0.2 and share[1] == 0.0  # L1's proximal step makes exact zeros; L2 only shrinks
