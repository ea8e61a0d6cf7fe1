"""Recipe sections of text and audio augmentation (E2, E3, E5): ``augment.text`` and ``augment.audio``.

Every strength is a per-member number (`PerMember` with `_member` metadata), named in the loop's hyper-parameter
tensors with a ``text_`` or ``audio_`` prefix, so once the recipe's ``augment`` section holds these two
dataclasses (they are: `config.AugmentConfig`), ``--grid augment.audio.pitch=0,1,2`` trains the values as members
of one population.

```yaml
augment:
  text: {synonym: 0.1, word_delete: 0.1, sentence_delete: 0.0, sentence_shuffle: 0.5}
  audio: {p: 0.5, trim: 0.1, pitch: 2, stretch: 0.1, warp: 100, noise: 20}
```
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..config import AudioAugmentConfig, TextAugmentConfig, parse  # noqa: F401 (declared in config.py, re-exported)


TEXT_STRENGTHS = ("synonym", "word_delete", "sentence_delete", "sentence_shuffle", "back_translate")
AUDIO_STRENGTHS = ("p", "trim", "fragment", "stretch", "pitch", "warp", "background", "noise")


def parse_text_augment(raw: Any) -> TextAugmentConfig:
    """``augment.text`` from a dict (unknown keys and out-of-range values refused by name)."""
    return parse(TextAugmentConfig, raw, "augment.text")


def parse_audio_augment(raw: Any) -> AudioAugmentConfig:
    """``augment.audio`` from a dict (unknown keys and out-of-range values refused by name)."""
    return parse(AudioAugmentConfig, raw, "augment.audio")


def member_strengths(cfg: Any, names: tuple[str, ...], members: int, prefix: str) -> dict[str, list[float]]:
    """Each strength as a list of `members` numbers (a number applies to all; a list must have M entries)."""
    out: dict[str, list[float]] = {}
    for name in names:
        value = getattr(cfg, name)
        values = list(value) if isinstance(value, (list, tuple)) else [value] * members
        if len(values) == 1:
            values = values * members
        if len(values) != members:
            raise ValueError(f"augment.{prefix}.{name}: expected one value or {members} (one per member), "
                             f"got {len(values)}")
        out[name] = [float(v) for v in values]
    return out


def augment_population_size(cfg: Any) -> int:
    """The M that `cfg`'s per-member lists describe (1 when none is a list)."""
    sizes = {len(getattr(cfg, f.name)) for f in fields(cfg) if isinstance(getattr(cfg, f.name), list)} - {1}
    if len(sizes) > 1:
        raise ValueError(f"augment: per-member lists must have one length, got {sorted(sizes)}")
    return sizes.pop() if sizes else 1


TEXT_DATA = ("text", "sentiment")
"""The data sets whose rows are strings (``augment.text`` applies)."""
AUDIO_DATA = ("audio",)
"""The data sets whose rows are waveforms (``augment.audio`` applies)."""


def modal_augmentation(recipe: Any) -> str | None:
    """"text", "audio" or None: which of the two the recipe's augmentation turns on (torch-free, checked when the
    recipe is read). An operation on data of another kind is a `RecipeError` naming both."""
    from ..config import RecipeError

    def on(cfg: Any, names: tuple[str, ...]) -> bool:
        values = [getattr(cfg, n) for n in names]
        return any(max(v) > 0 if isinstance(v, list) else v > 0 for v in values)

    text = on(recipe.augment.text, TEXT_STRENGTHS)
    audio = on(recipe.augment.audio, tuple(n for n in AUDIO_STRENGTHS if n != "p"))
    name = recipe.data.name
    if audio and name not in AUDIO_DATA:
        raise RecipeError(f"augment.audio: audio operations need audio data (data.name: audio), got data set '{name}'")
    if text and name not in TEXT_DATA:
        raise RecipeError(f"augment.text: text operations need text data (data.name: {' or '.join(TEXT_DATA)}), "
                          f"got data set '{name}'")
    return "text" if text else "audio" if audio else None
