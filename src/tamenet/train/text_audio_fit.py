"""Training on text or audio with augmentation: the recipe's usual model and loop, plus the modality's piece.

`fit_augmented(recipe, text=..., audio=...)` is `tamenet.fit` for ``data.name`` text / sentiment / audio with
``augment.text`` / ``augment.audio`` (E2, E3): the same `Trainer`, penalties, dropout, early stopping and
per-member numbers, with

* text: the rows are bag-of-words features over the training vocabulary, standardized on the training rows;
  each member holds its own copy of them, and `TextAugmentEpoch` rewrites the member's training rows from
  freshly augmented strings every epoch (validation and test rows stay the clean strings' features);
* audio: the rows are waveforms; the model is `FrontEnd(LogMel, body)` (log-mel computed on the device, inside the
  model), and `AudioAugmentBatch` augments each training batch per member before it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
import torch

from ..augment.config_text_audio import (AUDIO_STRENGTHS, TEXT_STRENGTHS, AudioAugmentConfig, TextAugmentConfig,
                                         augment_population_size, member_strengths, parse_audio_augment,
                                         parse_text_augment)
from ..config import Recipe, population_size
from ..data import SplitData
from ..data.datasets import fingerprint
from ..data.splits import assign_rows
from ..data.text import Vocabulary
from ..models import build_model
from .hyper import member_seeds
from .loop import Trainer
from .member_data import MemberData
from .text_audio_pieces import AudioAugmentBatch, FrontEnd, TextAugmentEpoch

TEXT_DATA = ("text", "sentiment")
AUDIO_DATA = ("audio",)


def _population(recipe: Recipe, cfg: Any) -> Recipe:
    """The recipe with as many members as the augmentation's per-member lists ask for (seeds repeated)."""
    m_recipe, m_aug = population_size(recipe), augment_population_size(cfg)
    if m_aug == 1 or m_aug == m_recipe:
        return recipe
    if m_recipe != 1:
        raise ValueError(f"augment: per-member lists of length {m_aug}, but the recipe's population has {m_recipe} members")
    seed = recipe.seed if not isinstance(recipe.seed, list) else recipe.seed[0]
    return dataclasses.replace(recipe, seed=[seed] * m_aug)


def _check_modality(recipe: Recipe, text: Any, audio: Any) -> None:
    name = recipe.data.name
    if audio is not None and name not in AUDIO_DATA:
        raise ValueError(f"augment.audio: audio operations need audio data (data.name: audio), got data set '{name}'")
    if text is not None and name not in TEXT_DATA:
        raise ValueError(f"augment.text: text operations need text data (data.name: text or sentiment), "
                         f"got data set '{name}'")


def fit_augmented(recipe: Any = None, *, text: TextAugmentConfig | dict | None = None,
                  audio: AudioAugmentConfig | dict | None = None, overrides: list[str] | None = None,
                  translator: Any = None, synonyms: Any = None, train_per_class: int | None = None,
                  callbacks: list[Callable] | None = None):
    """Train the recipe's population on text or audio data with the given augmentation; a `tamenet.api.TrainResult`
    (no run directory). `translator` is the back-translation paraphraser (`tamenet.augment.text.BackTranslator`
    or any ``str -> str``); `synonyms` a word -> synonyms map replacing the built-in one; `train_per_class`
    keeps at most that many training rows of each class (drawn with ``data.seed``; validation and test rows stay)."""
    from ..api import TrainResult, summarize
    from ..recipes import load_recipe

    started = time.perf_counter()
    recipe = load_recipe(recipe, overrides)
    if text is None and audio is None:  # the recipe's own augment.text / augment.audio
        text = recipe.augment.text if recipe.data.name in TEXT_DATA else None
        audio = recipe.augment.audio if recipe.data.name in AUDIO_DATA else None
    _check_modality(recipe, text, audio)
    if recipe.data.name in AUDIO_DATA:
        cfg = audio if isinstance(audio, AudioAugmentConfig) else parse_audio_augment(audio if audio is not None else {})
        recipe = _population(recipe, cfg)
        trainer, split = _audio_trainer(recipe, cfg, callbacks, train_per_class)
    elif recipe.data.name in TEXT_DATA:
        cfg = text if isinstance(text, TextAugmentConfig) else parse_text_augment(text if text is not None else {})
        recipe = _population(recipe, cfg)
        trainer, split = _text_trainer(recipe, cfg, callbacks, translator=translator, synonyms=synonyms,
                                       train_per_class=train_per_class)
    else:
        raise ValueError(f"fit_augmented: expected text or audio data (data.name: {', '.join(TEXT_DATA + AUDIO_DATA)}), "
                         f"got '{recipe.data.name}'")
    state = trainer.run()
    summary = summarize(trainer, state, split, wall_time=time.perf_counter() - started)
    return TrainResult(trainer.model, recipe, split, trainer.history, summary, None)


def _fewer(parts, y: np.ndarray, per_class: int | None, seed: int):
    """The RowSplit with at most `per_class` training rows of each class (a seeded draw), else unchanged."""
    if per_class is None:
        return parts
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"train_per_class: expected a positive integer, got {per_class!r}")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(parts.train[y[parts.train] == c])[:per_class] for c in np.unique(y[parts.train])]
    return dataclasses.replace(parts, train=np.sort(np.concatenate(keep)))


def _split_data(data, parts, X: np.ndarray, *, standardize: bool, fingerprint_of: np.ndarray) -> SplitData:
    """SplitData of features X (a row per data set row) on the parts, scaled on the training rows when asked."""
    from ..data.scaling import Standardizer

    scaler = Standardizer.fit(X[parts.train]) if standardize else None
    y = torch.from_numpy(np.ascontiguousarray(data.y, dtype=np.int64))

    def part(idx):
        rows = X[idx] if scaler is None else scaler.transform(X[idx])
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)), y[torch.from_numpy(idx)]

    (xtr, ytr), (xv, yv), (xte, yte) = part(parts.train), part(parts.val), part(parts.test)
    return SplitData(name=data.name, task=data.task, X_train=xtr, y_train=ytr, X_val=xv, y_val=yv, X_test=xte,
                     y_test=yte, n_features=X.shape[1], n_outputs=len(data.classes), classes=data.classes,
                     feature_names=tuple(data.feature_names) if len(data.feature_names) == X.shape[1]
                     else tuple(f"x{i}" for i in range(X.shape[1])),
                     image_shape=None, scaler=scaler, target_scaler=None,
                     fingerprint=fingerprint(fingerprint_of, data.y), rows=parts)


def _text_trainer(recipe: Recipe, cfg: TextAugmentConfig, callbacks, *, translator, synonyms, train_per_class=None):
    seeds = member_seeds(recipe)
    torch.manual_seed(seeds[0])
    raw, parts = assign_rows(recipe.data)
    parts = _fewer(parts, raw.y, train_per_class, recipe.data.seed)
    corpus = raw.raw
    vocabulary = Vocabulary.fit([corpus.texts[i] for i in parts.train])  # the training rows' words only
    index = vocabulary.index
    featured = raw.featurize(parts.train)
    split = _split_data(featured, parts, featured.X, standardize=recipe.data.standardize,
                        fingerprint_of=np.asarray(corpus.texts))

    def featurize(texts):
        bag = vocabulary.bag_of_words(texts, index)
        return bag if split.scaler is None else split.scaler.transform(bag)

    model = build_model(recipe.model, n_in=split.n_features, n_out=split.n_outputs, seeds=seeds)
    members = model.members
    rows = MemberData.from_split(split, members)
    rows = dataclasses.replace(rows, X=rows.X.expand(members, -1, -1).clone(), y=rows.y.expand(members, -1),
                               fold=torch.arange(members),
                               train_is_prefix=False)
    trainer = Trainer(model, rows, recipe, callbacks=callbacks)
    strengths = member_strengths(cfg, TEXT_STRENGTHS, members, "text")
    if cfg.synonyms is not None and synonyms is None:
        synonyms = read_synonyms(cfg.synonyms)
    trainer.step.inputs.insert(0, TextAugmentEpoch([corpus.texts[i] for i in parts.train], featurize, strengths,
                                                   synonyms=synonyms, translator=translator))
    return trainer, split


def read_synonyms(path: str) -> dict[str, tuple[str, ...]]:
    """A synonym map from a TSV file: ``word<TAB>synonym<TAB>synonym...`` per line (lower-cased)."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"augment.text.synonyms: expected a TSV file of word<TAB>synonyms, got '{path}'")
    out: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        cells = [c.strip().lower() for c in line.split("\t") if c.strip()]
        if not cells:
            continue
        if len(cells) < 2:
            raise ValueError(f"augment.text.synonyms: line {number} of '{file.name}' has a word but no synonym")
        out[cells[0]] = tuple(cells[1:])
    return out


def audio_split(recipe: Recipe, train_per_class: int | None = None):
    """(SplitData of waveforms, the loaded Dataset, its RowSplit): rows are raw waveforms, not standardized."""
    data, parts = assign_rows(recipe.data)
    parts = _fewer(parts, data.y, train_per_class, recipe.data.seed)
    clips = data.raw
    split = _split_data(data, parts, clips.waves, standardize=False, fingerprint_of=clips.waves)
    return split, data, parts


def _audio_trainer(recipe: Recipe, cfg: AudioAugmentConfig, callbacks, train_per_class=None):
    from ..data.audio import read_audio_folder, read_wav
    from ..data.modal import audio_front_end

    seeds = member_seeds(recipe)
    torch.manual_seed(seeds[0])
    split, data, parts = audio_split(recipe, train_per_class)
    front = audio_front_end(data, parts.train)
    n_in = int(front(split.X_train[:1]).shape[-1])
    body = build_model(recipe.model, n_in=n_in, n_out=split.n_outputs, seeds=seeds, input_shape=data.image_shape)
    model = FrontEnd(front, body)
    rows = MemberData.from_split(split, model.members)
    trainer = Trainer(model, rows, recipe, callbacks=callbacks)
    bank = None
    if cfg.background_path is not None:
        from pathlib import Path

        where = Path(cfg.background_path)
        if where.is_dir():
            bank = torch.from_numpy(read_audio_folder(where, label="folder", rate=data.raw.rate,
                                                      seconds=data.raw.waves.shape[1] / data.raw.rate).waves)
        else:
            bank = torch.from_numpy(read_wav(where)[1]).unsqueeze(0)
    elif any(v > 0 for v in member_strengths(cfg, ("background",), model.members, "audio")["background"]):
        raise ValueError("augment.audio.background: an SNR was given but no background_path (a WAV file or folder)")
    strengths = member_strengths(cfg, AUDIO_STRENGTHS, model.members, "audio")
    trainer.step.inputs.append(AudioAugmentBatch(strengths, rate=data.raw.rate, trim_mode=cfg.trim_mode,
                                                 bank=None if bank is None else bank.to(trainer.device)))
    return trainer, split
