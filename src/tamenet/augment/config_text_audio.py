"""Recipe sections of text and audio augmentation (E2, E3, E5): ``augment.text`` and ``augment.audio``.

Every strength is a per-member number (`PerMember` with `_member` metadata), named in the loop's hyper-parameter
tensors with a ``text_`` or ``audio_`` prefix, so once the recipe's ``augment`` section holds these two
dataclasses, ``--grid augment.audio.pitch=0,1,2`` trains the values as members of one population. Until then
`member_strengths` reads them from the config objects directly.

```yaml
augment:
  text: {synonym: 0.1, word_delete: 0.1, sentence_delete: 0.0, sentence_shuffle: 0.5}
  audio: {p: 0.5, trim: 0.1, pitch: 2, stretch: 0.1, warp: 100, noise: 20}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..config import PerMember, _choices, _member, parse


@dataclass(frozen=True)
class TextAugmentConfig:
    """Operations on the training strings, re-drawn every epoch per member (probabilities, 0: off)."""

    synonym: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_synonym"))
    word_delete: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_word_delete"))
    sentence_delete: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_sentence_delete"))
    sentence_shuffle: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_sentence_shuffle"))
    back_translate: PerMember = field(default=0.0, metadata=_member(0.0, 1.0, hyper="text_back_translate"))
    synonyms: str | None = None  # a TSV file of `word<TAB>synonym<TAB>synonym...` lines; default: the built-in map


@dataclass(frozen=True)
class AudioAugmentConfig:
    """Operations on the training waveforms, per batch and member; each fires on a row with probability `p`."""

    p: PerMember = field(default=0.5, metadata=_member(0.0, 1.0, hyper="audio_p"))
    trim: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="audio_trim"))  # share of the length
    trim_mode: str = field(default="any", metadata=_choices("any", "start", "end", "middle"))
    fragment: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="audio_fragment"))  # relative change
    stretch: PerMember = field(default=0.0, metadata=_member(0.0, 0.9, hyper="audio_stretch"))  # relative change
    pitch: PerMember = field(default=0.0, metadata=_member(0.0, 12.0, hyper="audio_pitch"))  # semitones
    warp: PerMember = field(default=0.0, metadata=_member(0.0, None, hyper="audio_warp"))  # Hz
    background: PerMember = field(default=0.0, metadata=_member(0.0, 100.0, hyper="audio_background"))  # SNR dB
    noise: PerMember = field(default=0.0, metadata=_member(0.0, 100.0, hyper="audio_noise"))  # SNR dB, 0: off
    background_path: str | None = None  # a WAV file or folder of background recordings


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
