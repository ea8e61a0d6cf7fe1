"""Text augmentation (E2): small operations on strings, applied before featurization.

Each operation takes one string, its strength and a `random.Random` and returns a new string; none downloads
anything. `augment_texts` applies a recipe's operations in a fixed order to a list of strings, with one
generator per member seeded from (member seed, epoch), so the strings member m sees in epoch e do not depend
on the population around it.

* ``synonym`` p: each word that has synonyms is replaced with probability p by one of them, chosen uniformly;
  the synonyms come from a map the caller passes, else from the small map shipped with the package
  (`tamenet.augment.text_synonyms`, hand-checked, sentiment-preserving; see docs/augmentation_text_audio.md
  for why not embedding neighbours);
* ``word_delete`` p: each word is deleted with probability p (EDA's random deletion, Wei & Zou 2019); a
  string never loses all of its words;
* ``sentence_delete`` p: each sentence is deleted with probability p, at least one is kept;
* ``sentence_shuffle`` p: with probability p the sentences are put in a random order;
* ``back_translate`` p: with probability p the string is replaced by ``backward(forward(text))``, a
  paraphrase through a pivot language (Sennrich et al. 2016; Xie et al. 2020) by a translator the caller plugs in.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .text_synonyms import SYNONYMS

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z']+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a text: split after '.', '!' or '?' followed by white space (empty parts dropped)."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def replace_synonyms(text: str, p: float, rng: random.Random, synonyms: Mapping[str, Sequence[str]] = SYNONYMS) -> str:
    """Each word with an entry in `synonyms` (looked up in lower case) replaced with probability p, case kept."""
    def swap(match: re.Match) -> str:
        word = match.group(0)
        options = synonyms.get(word.lower())
        if not options or rng.random() >= p:
            return word
        return _match_case(rng.choice(list(options)), word)

    return _WORD.sub(swap, text)


def _drop_each(text: str, parts: list[str], p: float, rng: random.Random) -> str:
    """`text`'s parts, each dropped with probability p, joined by spaces; one drawn part stays when none is kept."""
    if len(parts) <= 1 or p <= 0:
        return text
    kept = [part for part in parts if rng.random() >= p]
    return " ".join(kept) if kept else rng.choice(parts)


def delete_words(text: str, p: float, rng: random.Random) -> str:
    """Each white-space separated word dropped with probability p; at least one word stays."""
    return _drop_each(text, text.split(), p, rng)


def delete_sentences(text: str, p: float, rng: random.Random) -> str:
    """Each sentence dropped with probability p; at least one stays."""
    return _drop_each(text, split_sentences(text), p, rng)


def shuffle_sentences(text: str, p: float, rng: random.Random) -> str:
    """With probability p, the sentences in a random order."""
    sentences = split_sentences(text)
    if len(sentences) <= 1 or rng.random() >= p:
        return text
    rng.shuffle(sentences)
    return " ".join(sentences)


Translator = Callable[[str], str]
"""A translator: a function from a string to its translation (or an object with a `translate(str) -> str` method)."""


def as_translator(translator: Any, what: str = "translator") -> Translator:
    """A `str -> str` function from a function or an object with `translate`."""
    if hasattr(translator, "translate") and callable(translator.translate):
        return translator.translate
    if callable(translator):
        return translator
    raise TypeError(f"{what}: expected a function str -> str or an object with a translate(str) method, "
                    f"got {type(translator).__name__}")


@dataclass(frozen=True)
class BackTranslator:
    """Paraphrase by a round trip: `backward(forward(text))`, e.g. English -> German -> English."""

    forward: Any
    backward: Any

    def __call__(self, text: str) -> str:
        there = as_translator(self.forward, "back_translate forward")(text)
        if not isinstance(there, str):
            raise TypeError(f"back_translate: the forward translator returned {type(there).__name__}, expected str")
        back = as_translator(self.backward, "back_translate backward")(there)
        if not isinstance(back, str):
            raise TypeError(f"back_translate: the backward translator returned {type(back).__name__}, expected str")
        return back


def back_translate(text: str, p: float, rng: random.Random, paraphrase: Translator | None) -> str:
    """With probability p, `paraphrase(text)` (a `BackTranslator` or any `str -> str`)."""
    if paraphrase is None:
        raise ValueError("back_translate: needs a translator (pass translator=... or "
                         "BackTranslator(forward, backward)); none was given")
    if rng.random() >= p:
        return text
    return as_translator(paraphrase, "back_translate")(text)


TEXT_OPS: dict[str, str] = {
    "sentence_delete": "delete each sentence with probability p (one always stays)",
    "sentence_shuffle": "with probability p, reorder the sentences at random",
    "back_translate": "with probability p, paraphrase by a round trip through a pluggable translator",
    "synonym": "replace each word that has synonyms with probability p",
    "word_delete": "delete each word with probability p (one always stays)",
}
"""Text operations by recipe name, in the order they are applied (sentence level first, then words)."""


def check_text_ops(strengths: Mapping[str, Any]) -> None:
    """Refuse an unknown operation name (listing the valid ones) or a probability outside [0, 1]."""
    for name, p in strengths.items():
        if name not in TEXT_OPS:
            raise ValueError(f"unknown text augmentation '{name}' (valid: {', '.join(TEXT_OPS)})")
        values = p if isinstance(p, (list, tuple)) else [p]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"text augmentation '{name}': expected a probability in [0, 1], got {v!r}")


def augment_text(text: str, strengths: Mapping[str, float], rng: random.Random, *,
                 synonyms: Mapping[str, Sequence[str]] | None = None, translator: Translator | None = None) -> str:
    """One string through the operations with a non-zero strength, in `TEXT_OPS` order."""
    for name in TEXT_OPS:
        p = float(strengths.get(name, 0.0))
        if p <= 0:
            continue
        if name == "synonym":
            text = replace_synonyms(text, p, rng, SYNONYMS if synonyms is None else synonyms)
        elif name == "word_delete":
            text = delete_words(text, p, rng)
        elif name == "sentence_delete":
            text = delete_sentences(text, p, rng)
        elif name == "sentence_shuffle":
            text = shuffle_sentences(text, p, rng)
        else:
            text = back_translate(text, p, rng, translator)
    return text


def augment_texts(texts: Sequence[str], strengths: Mapping[str, float], *, seed: int, epoch: int = 0,
                  synonyms: Mapping[str, Sequence[str]] | None = None, translator: Translator | None = None) -> list[str]:
    """Every string augmented with one generator seeded by (seed, epoch): fresh strings each epoch."""
    check_text_ops(strengths)
    rng = random.Random(f"tamenet-text:{int(seed)}:{int(epoch)}")
    return [augment_text(t, strengths, rng, synonyms=synonyms, translator=translator) for t in texts]


def preview_text(texts: Sequence[str], strengths: Mapping[str, float], *, copies: int = 3, seed: int = 0,
                 synonyms: Mapping[str, Sequence[str]] | None = None, translator: Translator | None = None) -> list[str]:
    """For `tamenet preview`: each string followed by `copies` augmented versions (epochs 0..copies-1), as lines
    ``original: ...`` and ``  aug k: ...``."""
    lines: list[str] = []
    versions = [augment_texts(texts, strengths, seed=seed, epoch=e, synonyms=synonyms, translator=translator)
                for e in range(copies)]
    for i, text in enumerate(texts):
        lines.append(f"original: {text}")
        lines.extend(f"  aug {e}: {versions[e][i]}" for e in range(copies))
    return lines
