"""Text and audio augmentation through the normal entry points (E2, E3, B4): `tamenet.fit` / `tamenet train` with a
run directory (evaluate, resume), and `tamenet cv` / `search` with per-fold vocabularies and scalers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from tamenet.api import fit
from tamenet.cli import main
from tamenet.select import cross_validate
from tamenet.trained import evaluate_run, load_run

RATE = 8000
QUIET = {"tensorboard": False, "plots": False}


def _reviews(path, n=60, *, tag_every=None):
    """A TSV of two-sentence reviews, label = polarity of the adjectives; every `tag_every`-th row carries 'zebra'."""
    rng = random.Random(0)
    good, bad = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "dull"]
    lines = ["text\tlabel\tshop"]
    for i in range(n):
        words = good if i % 2 else bad
        tag = " zebra" if tag_every and i % tag_every == 0 else ""
        lines.append(f"The {rng.choice(['film', 'food'])} was {rng.choice(words)}{tag}. It felt {rng.choice(words)}!"
                     f"\t{i % 2}\ts{i % 6}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _text_recipe(path, **data):
    return {"data": {"name": "text", "path": str(path), "text": "text", "target": "label", **data},
            "model": {"widths": [8], "dropout": 0.1}, "train": {"epochs": 3, "batch_size": 16, "device": "cpu"},
            "track": QUIET}


@pytest.fixture
def wav_dir(tmp_path):
    """FSDD-named tones: digit d is a tone of 300 + 100 d Hz; three speakers, two takes each."""
    root = tmp_path / "recordings"
    root.mkdir()
    t = np.arange(int(RATE * 0.25)) / RATE
    for d in range(3):
        for s, speaker in enumerate(("ann", "bob", "cat")):
            for i in range(2):
                tone = 0.3 * np.sin(2 * np.pi * (300 + 100 * d + 7 * s + 3 * i) * t)
                wavfile.write(root / f"{d}_{speaker}_{i}.wav", RATE, (tone * 32767).astype(np.int16))
    return root


def test_train_with_text_augmentation_writes_a_run_that_evaluates_and_resumes_exactly(tmp_path):
    recipe = {**_text_recipe(_reviews(tmp_path / "r.tsv")), "augment": {"text": {"word_delete": [0.0, 0.3]}},
              "seed": [0, 1]}
    short = fit(recipe, out=tmp_path / "run", overrides=["train.epochs=2"])
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    again = evaluate_run(tmp_path / "run")  # the saved model on the recipe's clean features, as the summary says
    for m, member in enumerate(short.summary["per_member"]):
        assert again["val"]["loss"][m] == pytest.approx(member["val"]["loss"], rel=1e-6)
    from tamenet.train.text_audio_fit import text_rows  # predict on new strings with the saved vocabulary

    trained = load_run(tmp_path / "run")
    texts = ["The food was great. It felt nice!", "The film was awful. It felt dull!"]
    probs = trained.predict(text_rows(trained.preprocessing, texts), member=0)["probabilities"]
    features = torch.from_numpy(short.data.scaler.transform(text_rows(trained.preprocessing, texts))).float()
    short.model.eval()
    assert probs == pytest.approx(torch.softmax(short.model(features), -1)[0].detach().numpy(), abs=1e-6)
    resumed = fit(resume=tmp_path / "run", overrides=["train.epochs=3"])
    straight = fit(recipe)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in straight.history],
                                                                       rel=1e-6)
    assert straight.history[1]["train_loss"] != straight.history[0]["train_loss"]


def test_train_with_audio_augmentation_saves_the_body_over_the_plain_log_mel_features(wav_dir, tmp_path):
    recipe = {"data": {"name": "audio", "path": str(wav_dir), "groups": "speaker", "val": 0.5, "test": 0.3,
                       "seconds": 0.25},
              "model": {"widths": [8]}, "train": {"epochs": 2, "batch_size": 4, "device": "cpu"}, "track": QUIET,
              "augment": {"audio": {"p": 1.0, "pitch": 2.0, "noise": 20.0}}}
    result = fit(recipe, out=tmp_path / "run")
    trained = load_run(tmp_path / "run")
    assert trained.preprocessing["n_features"] == result.data.n_features  # log-mel 32 x frames, not samples
    again = evaluate_run(tmp_path / "run")
    assert again["val"]["loss"][0] == pytest.approx(result.summary["val"]["loss"], rel=1e-5)
    assert again["train"]["loss"][0] == pytest.approx(result.summary["train"]["loss"], rel=1e-5)


def test_a_fold_vocabulary_holds_only_its_training_rows_words(tmp_path):
    from tamenet.recipes import load_recipe
    from tamenet.select.cv import fold_rows, make_pool

    pool = make_pool(load_recipe(_text_recipe(_reviews(tmp_path / "r.tsv", tag_every=7), test=0.0)))
    zebra = np.array(["zebra" in t for t in pool.texts])
    scored = np.flatnonzero(zebra)
    fold_without = (np.flatnonzero(~zebra), scored)  # every 'zebra' row is scored: the word is no feature
    n_train = len(fold_without[0])
    fold_with = (np.arange(n_train), np.arange(n_train, len(zebra)))  # folds train on equal counts
    assert zebra[fold_with[0]].any()
    rows = fold_rows(pool, [fold_without, fold_with], candidates=1, standardize=False, stop_share=0.0, seed=0)
    without, with_ = rows.featurizers
    assert np.array_equal(without(["good zebra"]), without(["good"]))  # unknown: a word only scored rows hold
    assert not np.array_equal(with_(["good zebra"]), with_(["good"]))
    assert np.array_equal(rows.data.X[0, scored].numpy(), without([pool.texts[i] for i in scored]))


def test_text_cv_population_equals_separate_runs_and_no_scored_string_reaches_training(tmp_path):
    path = _reviews(tmp_path / "r.tsv", tag_every=5)
    recipe = {**_text_recipe(path, test=0.0, standardize=False), "seed": 3}
    seen = []

    def watch(record, trainer):  # no training row ever carries a word its own clean string lacks
        data, piece = trainer.data, trainer.step.inputs[0]
        for m, copy in enumerate(data.fold.tolist()):
            col = piece.featurize[m](["zebra"])[0].argmax()
            rows = data.train[m].tolist()
            tagged = np.array(["zebra" in piece.texts[r] for r in rows])
            values = data.X[copy, rows, col].numpy()
            assert (values[~tagged] == 0).all()
            seen.append(int((values[tagged] > 0).sum()))

    both = cross_validate({**recipe, "augment": {"text": {"word_delete": [0.0, 0.4], "synonym": 0.3}}}, folds=3,
                          callbacks=[watch])
    alone = cross_validate({**recipe, "augment": {"text": {"word_delete": 0.4, "synonym": 0.3}}}, folds=3)
    assert both["candidates"][1]["cv_loss_folds"] == pytest.approx(alone["candidates"][0]["cv_loss_folds"], rel=1e-5)
    assert both["candidates"][0]["cv_loss_folds"] != pytest.approx(alone["candidates"][0]["cv_loss_folds"], rel=1e-5)
    assert sum(seen) > 0  # the tag column is live: training rows that hold the word show it


def test_audio_search_over_pitch_trains_the_strengths_as_members_and_equals_a_separate_run(wav_dir):
    recipe = {"data": {"name": "audio", "path": str(wav_dir), "groups": "speaker", "test": 0.0, "seconds": 0.25},
              "model": {"widths": [8]}, "train": {"epochs": 2, "batch_size": 4, "device": "cpu"}, "track": QUIET,
              "augment": {"audio": {"p": 1.0}}, "seed": 1}
    from tamenet.select import search

    both = search(recipe, grid={"augment.audio.pitch": [0.0, 2.0]}, scheme="logo", refit=False)  # pool of waveforms
    alone = cross_validate({**recipe, "augment": {"audio": {"p": 1.0, "pitch": 2.0}}}, scheme="logo")
    assert both["folds"] == 3 and both["members"] == 6
    assert both["candidates"][1]["cv_loss_folds"] == pytest.approx(alone["candidates"][0]["cv_loss_folds"], rel=1e-5)
    assert both["candidates"][0]["cv_loss_folds"] != pytest.approx(alone["candidates"][0]["cv_loss_folds"], rel=1e-5)


def test_search_grid_over_a_text_strength_from_the_command_line(tmp_path, capsys):
    path = _reviews(tmp_path / "r.tsv")
    code = main(["search", "--set", "data.name=text", "--set", f"data.path={path}", "--set", "data.text=text",
                 "--set", "data.target=label", "--set", "model.widths=[8]", "--set", "train.epochs=2",
                 "--grid", "augment.text.word_delete=0,0.2", "--folds", "3", "--out", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert code == 0, out
    import json

    result = json.loads((tmp_path / "s" / "search.json").read_text())
    assert [c["augment.text.word_delete"] for c in result["candidates"]] == [0.0, 0.2]
    assert (tmp_path / "s" / "refit" / "model.pt").is_file()


def _grouped_csv(path, *, sep=","):
    """60 rows, 2 features, label from the first; 10 groups 'p0'..'p9' of 6 rows each."""
    rng = np.random.default_rng(0)
    lines = [sep.join(["a", "b", "patient", "y"])]
    for i in range(60):
        a, b = rng.normal(size=2)
        lines.append(sep.join([f"{a:.4f}", f"{b:.4f}", f"p{i // 6}", str(int(a > 0))]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", ["rows.csv", "rows.tsv"])
def test_csv_groups_keep_every_group_on_one_side_of_holdout_and_cv(tmp_path, name):
    from tamenet.data import assign_rows
    from tamenet.config import DataConfig
    from tamenet.recipes import load_recipe
    from tamenet.select.cv import make_pool
    from tamenet.select.splits import make_folds

    path = _grouped_csv(tmp_path / name, sep="\t" if name.endswith(".tsv") else ",")
    cfg = {"name": "csv", "path": str(path), "target": "y", "groups": "patient", "val": 0.2, "test": 0.2}
    data, parts = assign_rows(DataConfig(**cfg))
    assert data.X.shape == (60, 2) and data.feature_names == ("a", "b")  # the group column is no feature
    sides = [set(data.groups[p]) for p in (parts.train, parts.val, parts.test)]
    assert all(s for s in sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    pool = make_pool(load_recipe({"data": cfg}))
    for train, scored in make_folds("kfold", pool.y, folds=4, seed=0, groups=pool.groups):
        assert not set(pool.groups[train]) & set(pool.groups[scored])


def test_a_missing_csv_group_column_is_one_line_listing_the_columns(tmp_path, capsys):
    path = _grouped_csv(tmp_path / "rows.csv")
    code = main(["train", "--set", "data.name=csv", "--set", f"data.path={path}", "--set", "data.target=y",
                 "--set", "data.groups=speaker", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "data.groups 'speaker' is no column" in err[0] and "columns are: a, b, patient, y" in err[0]
    assert not (tmp_path / "run").exists()


def test_audio_preview_draws_spectrograms_of_the_recipes_wavs_or_a_tone(wav_dir, tmp_path, capsys, monkeypatch):
    import tamenet.augment.audio as audio

    drawn = []
    real = audio.preview_audio
    monkeypatch.setattr(audio, "preview_audio", lambda *a, **k: drawn.append((a, k)) or real(*a, **k))
    assert main(["preview", "--modality", "audio", "--set", "augment.audio.pitch=2", "--examples", "2",
                 "--copies", "2", "--out", str(tmp_path / "tone.png")]) == 0
    assert "synthetic tones" in capsys.readouterr().out and (tmp_path / "tone.png").stat().st_size > 1000
    assert main(["preview", "--modality", "audio", "--set", "data.name=audio", "--set", f"data.path={wav_dir}",
                 "--set", "data.seconds=0.25", "--set", "augment.audio.noise=10", "--examples", "3", "--copies", "1",
                 "--out", str(tmp_path / "wav.png")]) == 0
    assert "3 recordings" in capsys.readouterr().out and (tmp_path / "wav.png").is_file()
    (waves, rate, cfg), _ = drawn[1]
    assert rate == RATE and waves.shape == (3, RATE // 4) and cfg.noise == 10.0


def test_image_preview_mixes_the_copies_and_titles_them_with_the_label_weights(tmp_path, capsys, monkeypatch):
    import tamenet.cli_preview as preview

    captions = []
    real = preview.draw_grid
    monkeypatch.setattr(preview, "draw_grid", lambda grid, path, **k: captions.append((grid, k)) or real(grid, path, **k))
    assert main(["preview", "--set", "augment.mix.kind=mixup", "--set", "augment.mix.alpha=1.0", "--examples", "4",
                 "--copies", "3", "--out", str(tmp_path / "mix.png")]) == 0
    grid, kw = captions[0]
    assert kw["captions"][0][0] == "original" and len(kw["captions"]) == 4
    mixed = 0
    for r, row in enumerate(kw["captions"]):  # no image transform is on: a copy differs from its original by mixing
        for c, cell in enumerate(row[1:], 1):
            words = cell.split()
            if "+" not in cell:  # lam ~ 1: its own image
                assert torch_close(grid[r, c], grid[r, 0], atol=0.1), (r, c, cell)
            elif words[1] != words[4]:  # mixed with an image of another class (a partner may be itself)
                assert not torch_close(grid[r, c], grid[r, 0], atol=1e-6), (r, c, cell)
                mixed += 1
    assert mixed >= 3
    assert main(["preview", "--photos", "--size", "24", "--set", "augment.mix.kind=cutmix", "--examples", "2",
                 "--copies", "1", "--out", str(tmp_path / "cut.png")]) == 0
    assert "then cutmix" in capsys.readouterr().out


def torch_close(a, b, *, atol: float) -> bool:
    import torch

    return bool(torch.allclose(a, b, rtol=0.0, atol=atol))
