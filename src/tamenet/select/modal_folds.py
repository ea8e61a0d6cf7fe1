"""Text and audio rows in cross-validation and search (B4, E2, E3): what each fold learns from its training rows only.

* Text: a fold's features are the bag of words over the vocabulary of **that fold's training rows** (the pool's
  other rows, scored ones included, do not add words), standardized by that fold's scaler; folds whose
  vocabularies differ in size are zero-padded to the pool's width (a padded column is 0 for every row, so it
  neither trains nor predicts). With ``augment.text`` each member holds its own copy of the rows and
  `TextAugmentEpoch` rewrites only its training rows, each fold with its own featurizer.
* Audio with ``augment.audio``: the pool holds waveforms; the model is `FrontEnd(MemberLogMel, body)`, member m's
  log-mel features standardized by its fold's training rows (the plain path's `Standardizer` on the clean
  log-mel features), and `AudioAugmentBatch` augments its training batches. Scored and stopping rows pass the
  front end clean.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch

from ..data import Standardizer
from ..data.text import Vocabulary
from ..train.text_audio_fit import text_featurizer

MAX_WORDS = 5000
"""A fold's vocabulary size cap, as the holdout path's (`tamenet.data.text.text_features`)."""


@dataclasses.dataclass
class AudioPool:
    """An audio pool's clean log-mel features [N, F] (the plain path's), its rate and the clips (backgrounds)."""

    features: np.ndarray
    rate: int
    clips: Any


def fold_text_features(texts: list[str], train: np.ndarray, width: int, standardize: bool
                       ) -> tuple[np.ndarray, Callable[[list[str]], np.ndarray]]:
    """(features of every pool row [N, width], strings -> features) over the vocabulary of the rows `train`."""
    vocabulary = Vocabulary.fit([texts[i] for i in train], max_size=MAX_WORDS)
    words = vocabulary.words[2:]
    if len(words) > width:
        raise ValueError(f"a fold's vocabulary ({len(words)} words) is wider than the pool's ({width})")
    bag = vocabulary.bag_of_words(texts, vocabulary.index)
    scaler = Standardizer.fit(bag[train]) if standardize else None
    featurize = text_featurizer(tuple(words), scaler)
    pad = width - len(words)

    def padded(strings: list[str]) -> np.ndarray:
        out = np.asarray(featurize(strings), dtype=np.float32)
        return np.pad(out, ((0, 0), (0, pad))) if pad else out

    return padded(texts), padded


def member_copies(data, featurizers: list) -> tuple[Any, list]:
    """MemberData with one copy of the rows per member (its fold's copy), and each member's featurizer."""
    copies = data.fold.tolist()
    rows = dataclasses.replace(data, X=data.X[data.fold].clone(), y=data.y[data.fold].clone(),
                               fold=torch.arange(len(copies)), train_is_prefix=False)
    return rows, [featurizers[c] for c in copies]


def audio_front(pool, folds: list, ids: list[int], standardize: bool):
    """Member m's log-mel front end, standardized on its fold's training rows (fold m % K)."""
    from ..data.modal import N_FFT, N_MELS
    from ..train.text_audio_pieces import MemberLogMel

    k = len(folds)
    front = MemberLogMel(pool.audio.rate, n_fft=N_FFT, n_mels=N_MELS)
    if standardize:
        scalers = [Standardizer.fit(pool.audio.features[folds[m % k][0]]) for m in ids]
        front.mean = torch.as_tensor(np.stack([s.mean for s in scalers]), dtype=torch.float32).unsqueeze(1)
        front.std = torch.as_tensor(np.stack([s.std for s in scalers]), dtype=torch.float32).unsqueeze(1)
    return front


def attach_modal(trainer, recipe, pool, featurizers: list | None) -> None:
    """Adds the recipe's text or audio augmentation piece to a cross-validation trainer (none when off)."""
    from ..augment.config_text_audio import modal_augmentation

    modal = modal_augmentation(recipe)
    if modal == "text":
        from ..train.text_audio_fit import text_piece

        piece = text_piece(recipe, pool.texts, featurizers, trainer.members)
        trainer.step.inputs.insert(0, piece)
    elif modal == "audio":
        from ..train.text_audio_fit import audio_piece

        audio_piece(recipe, pool.audio.clips, trainer.members)(trainer)
