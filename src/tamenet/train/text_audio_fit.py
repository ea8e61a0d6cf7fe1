"""Text and audio augmentation in the one training loop: the rows, the model and the step piece of each modality.

`tamenet.fit` (and so `tamenet train`, `search`'s refit) calls `modal_run` when the recipe's ``augment.text`` or
``augment.audio`` turns an operation on (E2, E3); it returns what the usual `Trainer` needs, and the run
directory, checkpoints, resume, report, evaluate and predict work as for any other run:

* text: the rows are bag-of-words features over the training vocabulary, standardized on the training rows;
  each member holds its own copy of them, and `TextAugmentEpoch` rewrites the member's training rows from
  freshly augmented strings every epoch (validation and test rows stay the clean strings' features);
* audio: the trainer's rows are waveforms and its model `FrontEnd(LogMel, body)` (log-mel computed on the device,
  inside the model, standardized by the clean training rows' scaler), and `AudioAugmentBatch` augments each
  training batch per member before it. What the run records and saves is the body over the plain path's
  standardized log-mel features: exactly what `prepare(recipe.data)` gives, so `tamenet evaluate` / `predict`
  / `report` need nothing of their own.

`fit_augmented(recipe, text=..., audio=...)` is a thin alias of `tamenet.fit` with those sections merged in.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch

from ..augment.config_text_audio import AUDIO_STRENGTHS, TEXT_STRENGTHS, member_strengths
from ..config import Recipe, to_dict
from ..data import SplitData
from ..data.datasets import fingerprint
from ..data.splits import assign_rows
from ..data.text import PAD, UNKNOWN, Vocabulary
from ..models import Population, build_model
from .hyper import member_seeds
from .member_data import MemberData
from .text_audio_pieces import AudioAugmentBatch, FrontEnd, TextAugmentEpoch


@dataclasses.dataclass
class ModalRun:
    """What `fit` trains on with text or audio augmentation.

    `data`: the SplitData the run evaluates, summarizes and saves (features and scaler as the plain path);
    `model`: the population the trainer steps (audio: `FrontEnd` over waveforms); `rows`: the trainer's rows;
    `attach(trainer)`: adds the modality's step piece."""

    data: SplitData
    model: Population
    rows: MemberData
    attach: Callable[[Any], None]


def fit_augmented(recipe: Any = None, *, text: dict | None = None, audio: dict | None = None,
                  overrides: list[str] | None = None, translator: Any = None, synonyms: Any = None,
                  train_per_class: int | None = None, callbacks: list[Callable] | None = None,
                  out: Any = None):
    """`tamenet.fit` with `text` / `audio` merged into the recipe's ``augment.text`` / ``augment.audio``
    (a per-member list of length M makes a population of M); the other arguments as `fit`'s."""
    from ..api import fit
    from ..recipes import load_recipe

    raw = to_dict(load_recipe(recipe, overrides))
    for key, ops in (("text", text), ("audio", audio)):
        if ops is not None:
            if not isinstance(ops, dict):
                raise TypeError(f"fit_augmented: expected {key}= a dict of operations, got {type(ops).__name__}")
            raw["augment"] = {**raw.get("augment", {}), key: {**raw.get("augment", {}).get(key, {}), **ops}}
    return fit(raw, callbacks=callbacks, translator=translator, synonyms=synonyms, train_per_class=train_per_class,
               out=out)


def modal_run(recipe: Recipe, modal: str, *, translator: Any = None, synonyms: Any = None,
              train_per_class: int | None = None) -> ModalRun:
    """The rows, model and piece of text (`modal` "text") or audio ("audio") augmentation for `recipe`."""
    if modal == "text":
        return _text_run(recipe, translator=translator, synonyms=synonyms, train_per_class=train_per_class)
    if modal == "audio":
        return _audio_run(recipe, train_per_class=train_per_class)
    raise ValueError(f"modal_run: expected 'text' or 'audio', got {modal!r}")


def _fewer(parts, y: np.ndarray, per_class: int | None, seed: int):
    """The RowSplit with at most `per_class` training rows of each class (a seeded draw), else unchanged."""
    if per_class is None:
        return parts
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"train_per_class: expected a positive integer, got {per_class!r}")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(parts.train[y[parts.train] == c])[:per_class] for c in np.unique(y[parts.train])]
    return dataclasses.replace(parts, train=np.sort(np.concatenate(keep)))


def _split_data(data, parts, *, standardize: bool) -> SplitData:
    """The SplitData `prepare` makes of a featurized classification data set on these parts: the scaler fitted
    on the training rows, and the fingerprint `evaluate_run` recomputes."""
    from ..data.scaling import Standardizer
    from ..data.splits import _marks

    if data.task != "classification":
        raise ValueError(f"data '{data.name}': text and audio augmentation is for classification, got task '{data.task}'")
    scaler = Standardizer.fit(data.X[parts.train]) if standardize else None

    def part(idx):
        rows = data.X[idx] if scaler is None else scaler.transform(data.X[idx])
        return (torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(data.y[idx], dtype=np.int64)))

    (xtr, ytr), (xv, yv), (xte, yte) = part(parts.train), part(parts.val), part(parts.test)
    marks = None if parts.source == "shares" else _marks(parts, len(data.y))
    return SplitData(name=data.name, task=data.task, X_train=xtr, y_train=ytr, X_val=xv, y_val=yv, X_test=xte,
                     y_test=yte, n_features=int(data.X.shape[1]), n_outputs=len(data.classes), classes=data.classes,
                     feature_names=data.feature_names, image_shape=data.image_shape, scaler=scaler,
                     target_scaler=None, fingerprint=fingerprint(data.X, data.y, marks), rows=parts)


def text_featurizer(words: tuple[str, ...], scaler) -> Callable[[list[str]], np.ndarray]:
    """strings -> float32 [n, len(words)]: log(1 + count) over these vocabulary words, then `scaler` (or none)."""
    vocabulary = Vocabulary((PAD, UNKNOWN, *words))
    index = vocabulary.index

    def featurize(texts):
        bag = vocabulary.bag_of_words(texts, index)
        return bag if scaler is None else scaler.transform(bag)

    return featurize


def _text_run(recipe: Recipe, *, translator, synonyms, train_per_class) -> ModalRun:
    seeds = member_seeds(recipe)
    raw, parts = assign_rows(recipe.data)
    parts = _fewer(parts, raw.y, train_per_class, recipe.data.seed)
    corpus = raw.raw
    featured = raw.featurize(parts.train)  # the training rows' vocabulary only
    split = _split_data(featured, parts, standardize=recipe.data.standardize)
    model = build_model(recipe.model, n_in=split.n_features, n_out=split.n_outputs, seeds=seeds,
                        prune=recipe.prune, quantize=recipe.quantize)
    members = model.members
    rows = MemberData.from_split(split, members)
    rows = dataclasses.replace(rows, X=rows.X.expand(members, -1, -1).clone(), y=rows.y.expand(members, -1),
                               fold=torch.arange(members), train_is_prefix=False)
    texts = [corpus.texts[i] for i in np.concatenate([parts.train, parts.val])]  # row r of every copy
    featurize = text_featurizer(tuple(split.feature_names), split.scaler)
    piece = text_piece(recipe, texts, featurize, members, translator=translator, synonyms=synonyms)
    return ModalRun(split, model, rows, lambda trainer: trainer.step.inputs.insert(0, piece))


def text_piece(recipe: Recipe, texts: list[str], featurize, members: int, *, translator: Any = None,
               synonyms: Any = None) -> TextAugmentEpoch:
    """The recipe's `TextAugmentEpoch` (its synonym file read here, when it names one)."""
    cfg = recipe.augment.text
    if cfg.synonyms is not None and synonyms is None:
        synonyms = read_synonyms(cfg.synonyms)
    strengths = member_strengths(cfg, TEXT_STRENGTHS, members, "text")
    if translator is None and any(v > 0 for v in strengths["back_translate"]):
        raise ValueError("augment.text.back_translate: expected a translator (tamenet.fit(..., translator=f), "
                         "a function str -> str or an object with translate), got none; the command line has none")
    return TextAugmentEpoch(texts, featurize, strengths, synonyms=synonyms, translator=translator)


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


def background_bank(recipe: Recipe, clips, members: int, device=None) -> torch.Tensor | None:
    """The background recordings [R, Lb] of ``augment.audio.background_path`` (refused when an SNR asks for them
    and no path is given)."""
    from pathlib import Path

    from ..data.audio import read_audio_folder, read_wav

    cfg = recipe.augment.audio
    if cfg.background_path is None:
        if any(v > 0 for v in member_strengths(cfg, ("background",), members, "audio")["background"]):
            raise ValueError("augment.audio.background: an SNR was given but no background_path (a WAV file or folder)")
        return None
    where = Path(cfg.background_path)
    if where.is_dir():
        bank = torch.from_numpy(read_audio_folder(where, label="folder", rate=clips.rate,
                                                  seconds=clips.waves.shape[1] / clips.rate).waves)
    else:
        bank = torch.from_numpy(read_wav(where)[1]).unsqueeze(0)
    return bank if device is None else bank.to(device)


def audio_piece(recipe: Recipe, clips, members: int) -> Callable[[Any], None]:
    """attach(trainer): appends the recipe's `AudioAugmentBatch` to the trainer's input pieces."""
    cfg = recipe.augment.audio
    strengths = member_strengths(cfg, AUDIO_STRENGTHS, members, "audio")
    bank = background_bank(recipe, clips, members)

    def attach(trainer) -> None:
        trainer.step.inputs.append(AudioAugmentBatch(strengths, rate=clips.rate, trim_mode=cfg.trim_mode,
                                                     bank=None if bank is None else bank.to(trainer.device)))

    return attach


def _audio_run(recipe: Recipe, *, train_per_class) -> ModalRun:
    from ..data.audio import LogMel
    from ..data.modal import N_FFT, N_MELS

    seeds = member_seeds(recipe)
    data, parts = assign_rows(recipe.data)
    parts = _fewer(parts, data.y, train_per_class, recipe.data.seed)
    clips = data.raw
    split = _split_data(data, parts, standardize=recipe.data.standardize)  # the plain path's log-mel features
    front = LogMel(clips.rate, n_fft=N_FFT, n_mels=N_MELS)
    if split.scaler is not None:  # the same standardization as the saved features: the body is the saved model
        front.mean = torch.as_tensor(split.scaler.mean, dtype=torch.float32)
        front.std = torch.as_tensor(split.scaler.std, dtype=torch.float32)
    body = build_model(recipe.model, n_in=split.n_features, n_out=split.n_outputs, seeds=seeds,
                       input_shape=split.image_shape, prune=recipe.prune, quantize=recipe.quantize)
    model = FrontEnd(front, body)
    waves = torch.from_numpy(np.ascontiguousarray(clips.waves, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(data.y, dtype=np.int64))
    order = torch.from_numpy(np.concatenate([parts.train, parts.val]))
    n_train, n_val = len(parts.train), len(parts.val)
    rows = MemberData(task="classification", X=waves[order].unsqueeze(0), y=y[order].unsqueeze(0),
                      fold=torch.zeros(model.members, dtype=torch.long), train=torch.arange(n_train).unsqueeze(0),
                      val=torch.arange(n_train, n_train + n_val).unsqueeze(0), val_weight=None,
                      target_std=torch.ones(model.members, dtype=torch.float64), train_is_prefix=True)
    return ModalRun(split, model, rows, audio_piece(recipe, clips, model.members))




def text_rows(preprocessing: dict, texts: list[str]) -> np.ndarray:
    """New strings as the raw (unscaled) rows a text run's model takes: log(1 + count) of each word of the run's
    training vocabulary (its saved feature names), for `TrainedModel.predict` (which applies the saved scaler).
    Words the training rows did not hold count for nothing."""
    words = preprocessing.get("feature_names")
    if not isinstance(words, list) or len(words) != int(preprocessing["n_features"]):
        raise ValueError("text_rows: expected a text run's preprocessing (one vocabulary word per feature), got "
                         f"{len(words) if isinstance(words, list) else 'no'} names for {preprocessing['n_features']} "
                         "features")
    if isinstance(texts, str):
        raise TypeError("text_rows: expected a list of strings, got one string")
    return text_featurizer(tuple(words), None)(list(texts))
