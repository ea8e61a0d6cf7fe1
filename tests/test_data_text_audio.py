"""Text and audio data (E2, E3), group-aware splits (data.groups), and their one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from tamenet.cli import main
from tamenet.config import DataConfig
from tamenet.data import prepare
from tamenet.data.audio import read_audio_folder
from tamenet.data.datasets import load_dataset
from tamenet.data.groups import group_folds, group_split_indices
from tamenet.data.text import Vocabulary, read_sentiment, read_text_table
from tamenet.select.cv import make_pool
from tamenet.select.splits import make_folds

RATE = 4000


def _tone(freq: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * math.pi * freq * t) * 32767).astype(np.int16)


@pytest.fixture
def wav_dir(tmp_path):
    """FSDD-named tones: digit d is a tone of 300 + 100 d Hz; speakers ann, bob, cat, dan; lengths vary."""
    root = tmp_path / "recordings"
    root.mkdir()
    for d in range(3):
        for s, speaker in enumerate(("ann", "bob", "cat", "dan")):
            for i in range(2):
                wavfile.write(root / f"{d}_{speaker}_{i}.wav", RATE, _tone(300 + 100 * d + 7 * s, 0.2 + 0.05 * i))
    return root


def _one_line_error(capsys, argv, *needles):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out + err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_text_table_tsv_and_csv(tmp_path):
    (tmp_path / "a.tsv").write_text("review\tstars\tshop\nGreat food\t1\tx\nBad food\t0\ty\n")
    (tmp_path / "a.csv").write_text('review,stars\n"Great, food",1\nBad,0\n')
    tsv = read_text_table(tmp_path / "a.tsv", text="review", target="stars", groups="shop")
    assert tsv.texts == ["Great food", "Bad food"] and tsv.labels.tolist() == ["1", "0"] and tsv.groups.tolist() == ["x", "y"]
    assert read_text_table(tmp_path / "a.csv", text="review", target="stars").texts == ["Great, food", "Bad"]
    with pytest.raises(ValueError, match=r"data.text: column 'body' is not in 'a.tsv' \(columns: review, stars, shop\)"):
        read_text_table(tmp_path / "a.tsv", text="body", target="stars")


def test_sentiment_folder_format_and_source_groups(tmp_path):
    (tmp_path / "amazon_cells_labelled.txt").write_text("Works well.\t1\nBroke fast.  \t0\n")
    (tmp_path / "yelp_labelled.txt").write_text("Tasty!\t1\n")
    (tmp_path / "readme.txt").write_text("not data\n")
    corpus = read_sentiment(tmp_path, groups="source")
    assert corpus.texts == ["Works well.", "Broke fast.", "Tasty!"] and corpus.labels.tolist() == ["1", "0", "1"]
    assert corpus.groups.tolist() == ["amazon", "amazon", "yelp"]


def test_vocabulary_comes_from_the_training_split_only(tmp_path):
    rows = [f"common word{i % 3} train{i}\t{i % 2}" for i in range(40)]
    path = tmp_path / "s.tsv"
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    data = prepare(DataConfig(name="text", path=str(path), text="text", target="label", val=0.25, test=0.25))
    seen = {f"train{i}" for i in data.rows.train.tolist()}
    held = {f"train{i}" for i in np.concatenate([data.rows.val, data.rows.test]).tolist()}
    names = set(data.feature_names)
    assert seen <= names and not (held & names)
    assert data.n_features == len(names) == len(seen) + 4  # + common, word0, word1, word2
    vocab = Vocabulary.fit(["a b b", "c"], min_count=2)
    assert vocab.words == ("<pad>", "<unk>", "b") and vocab.encode(["b z"]) == [[2, 1]]
    assert np.allclose(vocab.bag_of_words(["b b a"]), [[math.log(3)]])


def test_wav_folder_labels_groups_rate_and_length(wav_dir, tmp_path):
    clips = read_audio_folder(wav_dir, groups="speaker", seconds=0.25)
    assert clips.waves.shape == (24, 1000) and clips.rate == RATE
    assert sorted(set(clips.labels.tolist())) == ["0", "1", "2"] and set(clips.groups.tolist()) == {"ann", "bob", "cat", "dan"}
    i = clips.files.index("1_bob_0.wav")
    assert clips.labels[i] == "1" and clips.groups[i] == "bob"
    assert np.all(clips.waves[i, 800:] == 0) and np.abs(clips.waves[i, :800]).max() > 0.4  # 0.2 s padded to 0.25 s
    half = read_audio_folder(wav_dir, rate=2000, seconds=0.2)
    spectrum = np.abs(np.fft.rfft(half.waves[half.files.index("2_ann_0.wav")]))
    assert abs(np.argmax(spectrum) * 2000 / 400 - 500) <= 5  # resampled to 2 kHz, the 500 Hz tone stays
    folders = tmp_path / "byfolder"
    for label in ("yes", "no"):
        (folders / label).mkdir(parents=True)
        wavfile.write(folders / label / "take.wav", RATE, _tone(440, 0.1))
    by_folder = read_audio_folder(folders, label="folder", seconds=0.1)
    assert by_folder.labels.tolist() == ["no", "yes"]


def test_audio_data_set_trains_through_the_plain_path(wav_dir):
    data = load_dataset(DataConfig(name="audio", path=str(wav_dir), groups="speaker", seconds=0.25))
    assert data.image_shape[:2] == (1, 32) and data.X.shape == (24, 32 * data.image_shape[2])
    assert data.groups is not None and data.raw.waves.shape == (24, 1000)


def test_holdout_and_folds_never_share_a_group():
    groups = np.repeat(np.array(["a", "b", "c", "d", "e", "f", "g"]), [5, 9, 3, 7, 4, 6, 8])
    y = np.arange(len(groups)) % 2
    train, val, test = group_split_indices(groups, val=0.25, test=0.25, seed=1)
    parts = [set(groups[p]) for p in (train, val, test)]
    assert all(parts) and not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(groups)))
    for scheme in ("kfold", "stratified", "logo", "holdout", "repeated"):
        folds = make_folds(scheme, y, folds=3, seed=0, val=0.3, groups=groups)
        assert len({len(tr) for tr, _ in folds}) == 1  # one training size: the folds train as one population
        for tr, scored in folds:
            assert not set(groups[tr]) & set(groups[scored])
    assert len(group_folds("logo", y, groups)) == 7
    with pytest.raises(ValueError, match="cannot keep groups whole .* valid with groups: kfold, stratified, logo"):
        make_folds("bootstrap", y, groups=groups)
    with pytest.raises(ValueError, match="needs data.groups"):
        make_folds("logo", y)


def test_cross_validation_pool_keeps_each_rows_group(wav_dir):
    from tamenet.recipes import load_recipe

    recipe = load_recipe({"data": {"name": "audio", "path": str(wav_dir), "groups": "speaker", "test": 0.25,
                                   "seconds": 0.25}})
    pool = make_pool(recipe)
    assert pool.groups is not None and len(pool.groups) == len(pool.y) == 18 and len(set(pool.groups)) == 3


def test_bad_text_and_audio_input_is_one_line_exit_2(capsys, tmp_path, wav_dir):
    (tmp_path / "t.tsv").write_text("review\tstars\nok\t1\nbad\t0\n")
    _one_line_error(capsys, ["train", "--set", "data.name=text", "--set", f"data.path={tmp_path / 't.tsv'}",
                             "--set", "data.text=body", "--set", "data.target=stars"],
                    "data.text: column 'body' is not in 't.tsv' (columns: review, stars)")
    _one_line_error(capsys, ["train", "--set", "data.name=audio", "--set", f"data.path={tmp_path / 'none'}"],
                    "expected a folder of WAV files", "(no such folder)")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0_x_0.wav").write_bytes(b"this is not a wav file")
    _one_line_error(capsys, ["train", "--set", "data.name=audio", "--set", f"data.path={broken}"],
                    "'0_x_0.wav' is not a readable WAV file")
    empty = tmp_path / "empty"
    empty.mkdir()
    wavfile.write(empty / "0_x_0.wav", RATE, np.zeros(0, dtype=np.int16))
    _one_line_error(capsys, ["train", "--set", "data.name=audio", "--set", f"data.path={empty}"],
                    "WAV file '0_x_0.wav' holds no samples")


def test_an_audio_op_on_non_audio_data_is_refused():
    from tamenet.train.text_audio_fit import fit_augmented

    with pytest.raises(ValueError, match="augment.audio: audio operations need audio data .* got data set 'digits'"):
        fit_augmented({"data": {"name": "digits"}}, audio={"pitch": 2})
    with pytest.raises(ValueError, match="augment.text: text operations need text data"):
        fit_augmented({"data": {"name": "digits"}}, text={"synonym": 0.1})


def test_audio_population_member_equals_its_separate_run(wav_dir):
    from tamenet.train.text_audio_fit import fit_augmented

    recipe = {"data": {"name": "audio", "path": str(wav_dir), "groups": "speaker", "val": 0.25, "test": 0.25,
                       "seconds": 0.25},
              "model": {"widths": [16]}, "train": {"epochs": 2, "batch_size": 8, "device": "cpu"}}
    ops = {"p": [0.7, 0.9], "pitch": [1.0, 2.0], "noise": [0.0, 20.0], "trim": [0.2, 0.1], "stretch": [0.0, 0.2]}
    both = fit_augmented({**recipe, "seed": [1, 2]}, audio=ops)
    alone = fit_augmented({**recipe, "seed": 2}, audio={k: v[1] for k, v in ops.items()})
    pair = [r for r in both.history if r["member"] == 1]
    for a, b in zip(pair, alone.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    # validation rows are the clean waveforms: the model's own loss on them is the loop's val_loss at its best epoch
    from tamenet.train import evaluate

    loss, _ = evaluate(alone.model, alone.data.X_val, alone.data.y_val, "classification")
    assert float(loss[0]) == pytest.approx(alone.history[alone.summary["best_epoch"] - 1]["val_loss"], rel=1e-5)
    # what the run keeps is the body over the plain path's standardized log-mel features (32 mel bands x frames)
    assert torch.is_tensor(alone.data.X_val) and alone.data.X_val.shape[1] == alone.data.n_features
    assert alone.data.n_features % 32 == 0 and alone.data.image_shape[1] == 32
