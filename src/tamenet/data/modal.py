"""Text and audio rows as `Dataset`s: what ``data: {name: text | sentiment | audio}`` loads.

A text data set's features depend on the split (the vocabulary is the training rows'), so it is loaded with a
placeholder X and a `featurize(train_rows)` that `prepare` calls once the rows are split. An audio data set's
features are the clean recordings' log-mel spectrograms (no state learned from any split), viewed as an image
[1, n_mels, frames]; its waveforms stay in `raw` for augmentation, which the augmented path featurizes again.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import DataConfig
from .audio import DEFAULT_PATTERN, LogMel, log_mel_features, read_audio_folder
from .datasets import Dataset, dataset_from_arrays
from .text import TextCorpus, read_sentiment, read_text_table, text_features

N_FFT, N_MELS = 256, 32
"""The plain path's log-mel settings (32 ms frames at 8 kHz, hop 16 ms)."""


def load_modal(cfg: DataConfig, path: str) -> Dataset:
    """The `Dataset` of a text table, a sentiment folder or a WAV folder."""
    if cfg.name == "audio":
        return _audio(cfg, path)
    if cfg.name == "text":
        corpus = read_text_table(path, text=cfg.text, target=cfg.target, groups=cfg.groups)
    else:
        corpus = read_sentiment(path, groups=cfg.groups)
    return text_dataset(corpus, task=cfg.task)


def text_dataset(corpus: TextCorpus, *, task: str = "auto", name: str | None = None) -> Dataset:
    """A placeholder-featured Dataset of strings; `featurize(train_rows)` gives its bag-of-words features."""
    name = name or corpus.source.rsplit(".", 1)[0]
    base = dataset_from_arrays(np.zeros((len(corpus.texts), 1), dtype=np.float32), corpus.labels, task=task, name=name)
    if base.task != "classification":
        raise ValueError(f"data '{name}': text data sets are for classification, got task '{base.task}'")
    labels = base.y

    def featurize(train: np.ndarray) -> Dataset:
        X, vocabulary = text_features(corpus, np.asarray(train))
        featured = dataset_from_arrays(X, np.asarray(base.classes)[labels], task="classification", name=name,
                                       feature_names=vocabulary.words[2:])
        return dataclasses.replace(
            featured, groups=corpus.groups, raw=corpus, featurize=None,
            description=f"{corpus.source}: {len(labels)} strings, vocabulary of {len(vocabulary) - 2} training words, "
                        f"{len(base.classes)} classes")

    return dataclasses.replace(base, groups=corpus.groups, raw=corpus, featurize=featurize,
                               description=f"{corpus.source}: {len(labels)} strings, {len(base.classes)} classes")


def _audio(cfg: DataConfig, path: str) -> Dataset:
    clips = read_audio_folder(path, label=cfg.label or "name", pattern=cfg.pattern or DEFAULT_PATTERN,
                              groups=cfg.groups, rate=cfg.rate, seconds=cfg.seconds or 1.0)
    X = log_mel_features(clips.waves, clips.rate, n_fft=N_FFT, n_mels=N_MELS)
    frames = X.shape[1] // N_MELS
    data = dataset_from_arrays(X, clips.labels, task=cfg.task, name=path.rstrip("/").rsplit("/", 1)[-1] or "audio",
                               image_shape=(1, N_MELS, frames))
    return dataclasses.replace(
        data, groups=clips.groups, raw=clips,
        description=f"{len(clips.files)} WAV files at {clips.rate} Hz, {clips.waves.shape[1]} samples each, "
                    f"log-mel {N_MELS} x {frames}, {len(data.classes or ())} classes")


def audio_front_end(data: Dataset, train: np.ndarray) -> LogMel:
    """The log-mel front end of the augmented path, standardized on the clean training waveforms' features."""
    import torch

    clips = data.raw
    front = LogMel(clips.rate, n_fft=N_FFT, n_mels=N_MELS)
    return front.fit_standardizer(torch.from_numpy(clips.waves[np.asarray(train)]))
