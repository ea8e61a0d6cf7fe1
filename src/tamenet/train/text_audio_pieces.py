"""Step pieces of text and audio augmentation (E2, E3), and the front end that featurizes waveforms in the model.

Both act on training rows only: they are input pieces of the step (`train/step.py`), which validation, test and
scored rows never pass through. Member m's randomness is a function of its own seed alone (text: a generator
seeded by (seed_m, epoch); audio: `MemberRandom` streams at (seed_m, step)), so a population augments exactly as
its members would alone.

* `TextAugmentEpoch` (per epoch): at `begin_epoch` it augments the training strings afresh for each member,
  featurizes them over the training vocabulary, standardizes them with the training scaler, and writes them into
  that member's copy of the rows (`MemberData.X` [M, N, F], one copy per member); it does nothing per batch.
* `AudioAugmentBatch` (per batch): a batch of waveforms [B, L] or [M, B, L] -> [M, B, L], each member's rows
  augmented with its own strengths (`tamenet.augment.audio.augment_waves`); the model's `FrontEnd` computes the
  log-mel features after it, on the device.

A strength is read from ``trainer.hyper["text_<op>"]`` / ``["audio_<op>"]`` when the recipe holds the ``augment``
section (the names `config_text_audio` declares), else from the lists the piece was built with.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..augment.audio import AUDIO_OPS, UNIFORMS, augment_waves
from ..augment.config_text_audio import AUDIO_STRENGTHS, TEXT_STRENGTHS
from ..augment.text import augment_texts
from ..data.audio import LogMel
from ..models.base import Population
from ..nn import mix_seed

TEXT_STREAM = 7_100
"""Seed salt of the text augmentation's per-member generators."""
AUDIO_STREAM = 7_200
"""Random streams of the audio augmentation (AUDIO_STREAM: its uniforms, + 1: its white noise)."""


def _strengths_now(trainer, own: dict[str, list[float]], prefix: str) -> dict[str, list[float]]:
    """The members' strengths: the loop's hyper-parameter tensors when the recipe declares them, else `own`."""
    out = {}
    for name, values in own.items():
        hyper = trainer.hyper.get(f"{prefix}_{name}") if hasattr(trainer, "hyper") else None
        out[name] = hyper.tolist() if hyper is not None else list(values)
    return out


class TextAugmentEpoch:
    """Fresh augmented training strings per member and epoch, featurized into the member's own copy of the rows.

    `texts`: the string of every row of the copies (row r of `trainer.data.X[c]` is `texts[r]`); `featurize`:
    strings -> float32 features [n, F], one function for every copy or a list with one per copy (in
    cross-validation each fold's vocabulary and scaler, fitted on that fold's training rows only);
    `strengths`: op -> one probability per member (the recipe's ``augment.text``, read from `trainer.hyper`
    when it declares them). Every member needs a copy of its own (`MemberData.fold` distinct): only the rows
    the member trains on are rewritten, so its validation and scored rows keep the clean strings' features.
    """

    def __init__(self, texts: Sequence[str], featurize, strengths: dict[str, list[float]], *,
                 synonyms: Any = None, translator: Any = None) -> None:
        unknown = [k for k in strengths if k not in TEXT_STRENGTHS]
        if unknown:
            raise ValueError(f"unknown text augmentation '{unknown[0]}' (valid: {', '.join(TEXT_STRENGTHS)})")
        self.texts = list(texts)
        self.featurize = featurize
        self.strengths = {k: list(v) for k, v in strengths.items()}
        self.synonyms, self.translator = synonyms, translator
        self._changed: set[int] = set()  # the copies that hold augmented rows now

    def _featurizer(self, copy: int):
        return self.featurize[copy] if isinstance(self.featurize, (list, tuple)) else self.featurize

    def begin_epoch(self, trainer) -> bool:
        data = trainer.data
        copies = data.fold.tolist()
        if len(set(copies)) != trainer.members or data.X.shape[0] < trainer.members:
            raise ValueError("text augmentation needs one copy of the rows per member (MemberData.X [M, N, F]); "
                             f"got {data.X.shape[0]} copies for {trainer.members} members")
        strengths = _strengths_now(trainer, self.strengths, "text")
        epoch = trainer.state.epoch
        for m, copy in enumerate(copies):
            mine = {k: v[m] for k, v in strengths.items() if v[m] > 0}
            if not mine and copy not in self._changed:
                continue  # this member's copy already holds the clean rows
            at = data.train[0] if data.train.shape[0] == 1 else data.train[m]
            clean = [self.texts[r] for r in at.tolist()]
            seed = mix_seed(trainer.model.random.seeds[m], TEXT_STREAM)
            texts = augment_texts(clean, mine, seed=seed, epoch=epoch, synonyms=self.synonyms,
                                  translator=self.translator) if mine else clean
            feats = torch.as_tensor(np.asarray(self._featurizer(copy)(texts), dtype=np.float32),
                                    dtype=data.X.dtype, device=data.X.device)
            data.X[copy, at] = feats
            (self._changed.add if mine else self._changed.discard)(copy)
        return False  # nothing to do per batch: the rows themselves changed

    def __call__(self, trainer, x: torch.Tensor) -> torch.Tensor:
        return x

    def keep_members_(self, index: torch.Tensor) -> None:
        keep = index.tolist()
        self.strengths = {k: [v[i] for i in keep] for k, v in self.strengths.items()}


class AudioAugmentBatch:
    """Each training batch of waveforms augmented per member: [B, L] or [M, B, L] -> [M, B, L].

    `strengths`: op (and ``p``) -> one number per member; `bank` [R, Lb]: background recordings, if any.
    """

    def __init__(self, strengths: dict[str, list[float]], *, rate: int, trim_mode: str = "any",
                 bank: torch.Tensor | None = None) -> None:
        unknown = [k for k in strengths if k not in AUDIO_STRENGTHS]
        if unknown:
            raise ValueError(f"unknown audio augmentation '{unknown[0]}' (valid: {', '.join(AUDIO_STRENGTHS)})")
        self.strengths = {k: list(v) for k, v in strengths.items()}
        self.rate, self.trim_mode, self.bank = int(rate), trim_mode, bank
        self._now: dict[str, torch.Tensor] = {}
        self._active: tuple[str, ...] = ()

    def begin_epoch(self, trainer) -> bool:
        values = _strengths_now(trainer, self.strengths, "audio")
        device = trainer.device if hasattr(trainer, "device") else torch.device("cpu")
        self._now = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in values.items()}
        self._active = tuple(k for k in AUDIO_OPS if k in values and any(s > 0 for s in values[k]))
        p = values.get("p", [0.5] * trainer.members)
        # the members that augment at all: the others' rows are not computed (decided here, on the host)
        self._members = [m for m in range(trainer.members)
                         if p[m] > 0 and any(values[k][m] > 0 for k in self._active)]
        self._index = torch.tensor(self._members, dtype=torch.long, device=device)
        return bool(self._members)

    def __call__(self, trainer, x: torch.Tensor) -> torch.Tensor:
        members = trainer.members
        if x.dim() != 2 and x.dim() != 3:
            raise ValueError(f"audio augmentation: expected waveforms [B, L] or [M, B, L], got shape {tuple(x.shape)}")
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(members, *x.shape)
        _, b, length = x.shape
        every = len(self._members) == members
        index = self._index.to(x.device)
        random = trainer.model.random
        u = random.uniform(AUDIO_STREAM, (b, UNIFORMS), device=x.device)
        noise = random.normal(AUDIO_STREAM + 1, (b, length), device=x.device) if "noise" in self._active else None
        if not every:  # each member still draws what it would alone; only the augmenting members' rows are computed
            u, noise = u[index], None if noise is None else noise[index]
        m = len(self._members)
        now = self._now if every else {k: v[index] for k, v in self._now.items()}
        per_row = {k: v.repeat_interleave(b) for k, v in now.items() if k != "p"}
        p = now["p"].repeat_interleave(b) if "p" in now else torch.full((m * b,), 0.5, device=x.device)
        rows = x if every else x[index]
        out = augment_waves(rows.reshape(m * b, length), per_row, u.reshape(m * b, UNIFORMS), rate=self.rate, p=p,
                            trim_mode=self.trim_mode, noise=None if noise is None else noise.reshape(m * b, length),
                            bank=self.bank, active=self._active).view(m, b, length)
        if every:
            return out
        full = x.clone()
        full[index] = out
        return full

    def keep_members_(self, index: torch.Tensor) -> None:
        keep = index.tolist()
        self.strengths = {k: [v[i] for i in keep] for k, v in self.strengths.items()}


class FrontEnd(Population):
    """A population whose rows pass a fixed, parameter-free featurizer first: `body(front(x))`.

    Audio: `front` is `tamenet.data.audio.LogMel` (standardized on the training rows), `body` the usual MLP; the
    model takes waveforms, so augmentation acts before the features are computed, on the model's device. The
    parameters, their roles and every member tensor are the body's.
    """

    def __init__(self, front: nn.Module, body: Population) -> None:
        super().__init__()
        self.front, self.body = front, body
        self.members, self.random = body.members, body.random

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.front(x))

    def param_roles(self):
        return self.body.param_roles()


class MemberLogMel(LogMel):
    """`LogMel` whose standardization is per member: `mean` and `std` [M, 1, F] (cross-validation: each member's
    fold's training rows). Waveforms [M, B, L] or shared [B, L] -> features [M, B, F]. The two are member
    buffers, so compaction and the best-weight snapshot keep each member's own."""

    member_buffers = ("mean", "std")
