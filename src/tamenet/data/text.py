"""Text data (E2): a table of strings and labels, the Sentiment Labelled Sentences folder, a vocabulary and
bag-of-words features.

``data: {name: text, path: FILE, text: COLUMN, target: COLUMN}`` reads a TSV (``.tsv``, ``.txt``) or CSV file
with a header row; ``data: {name: sentiment, path: DIR}`` reads every ``*.txt`` file of the Sentiment Labelled
Sentences format (``sentence<TAB>label``, no header; Kotzias et al., KDD 2015), and its rows' group is the file
they came from (``data.groups: source``). The vocabulary is built from the TRAINING rows only (`Vocabulary.fit`),
so a word seen only in validation or test rows is unknown to the model; features are log(1 + count) of each
vocabulary word (a bag of words; the MLP's first dense layer over it is an embedding bag in sum mode).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9']+")
TEXT_SUFFIXES = {".tsv": "\t", ".txt": "\t", ".csv": ","}
"""File suffix -> field delimiter of `read_text_table`."""


def tokenize(text: str) -> list[str]:
    """Lower-case words (letters, digits, apostrophes); punctuation separates them."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """Raw text rows: the strings, their labels and (optionally) each row's group."""

    texts: list[str]
    labels: np.ndarray
    groups: np.ndarray | None
    source: str


def read_text_table(path: str | Path, *, text: str | None, target: str | None, groups: str | None = None) -> TextCorpus:
    """A TSV/CSV file with a header row: the `text` column's strings, the `target` column's labels, and the
    `groups` column when named. A missing file or column is a one-line error naming what exists."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.path: expected a TSV or CSV file, got '{path}' (no such file)")
    delimiter = TEXT_SUFFIXES.get(path.suffix.lower())
    if delimiter is None:
        raise ValueError(f"data.path: expected a file ending in {', '.join(TEXT_SUFFIXES)}, got '{path.name}'")
    for key, value in (("text", text), ("target", target)):
        if not value:
            raise ValueError(f"data.{key}: data set 'text' needs the name of its {key} column, got none")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter=delimiter))
    if not rows:
        raise ValueError(f"data.path: '{path.name}' is empty; expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    wanted = {"text": text, "target": target, **({"groups": groups} if groups else {})}
    where = {}
    for key, column in wanted.items():
        if column not in header:
            raise ValueError(f"data.{key}: column '{column}' is not in '{path.name}' (columns: {', '.join(header)})")
        where[key] = header.index(column)
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise ValueError(f"data.path: '{path.name}' has a header but no data rows")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"data.path: row {i + 2} of '{path.name}' has {len(r)} fields, the header has {len(header)}")
    return TextCorpus(
        texts=[r[where["text"]] for r in body],
        labels=np.asarray([r[where["target"]].strip() for r in body]),
        groups=np.asarray([r[where["groups"]].strip() for r in body]) if groups else None,
        source=path.name,
    )


def read_sentiment(path: str | Path, *, groups: str | None = None) -> TextCorpus:
    """The Sentiment Labelled Sentences format: a folder of ``*.txt`` files (or one file) of ``sentence<TAB>label``
    lines without a header; lines not of that form (the data set's readme) are refused. ``groups: source`` makes
    each row's group its file's name up to the first '_' (amazon, imdb, yelp)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.name.lower() != "readme.txt")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"data.path: expected a folder of sentence<TAB>label .txt files, got '{path}' (not found)")
    if not files:
        raise FileNotFoundError(f"data.path: no .txt files of sentence<TAB>label lines in '{path}'")
    if groups not in (None, "source"):
        raise ValueError(f"data.groups: data set 'sentiment' groups rows by 'source' (the file), got '{groups}'")
    texts, labels, sources = [], [], []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            sentence, tab, label = line.rstrip().rpartition("\t")
            if not tab or not sentence.strip():
                raise ValueError(f"data.path: line {number} of '{file.name}' is not 'sentence<TAB>label'")
            texts.append(sentence.strip())
            labels.append(label.strip())
            sources.append(file.stem.split("_")[0])
    return TextCorpus(texts, np.asarray(labels), np.asarray(sources) if groups else None, path.name)


PAD, UNKNOWN = "<pad>", "<unk>"


@dataclass(frozen=True)
class Vocabulary:
    """Words by index; index 0 is padding and 1 the unknown word. Built from training strings only."""

    words: tuple[str, ...]

    @classmethod
    def fit(cls, texts: Sequence[str], *, min_count: int = 1, max_size: int | None = None) -> "Vocabulary":
        """Every word occurring at least `min_count` times in `texts`, most frequent first (ties alphabetical),
        at most `max_size` of them."""
        counts = Counter(w for t in texts for w in tokenize(t))
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls((PAD, UNKNOWN, *ranked))

    def __len__(self) -> int:
        return len(self.words)

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, texts: Sequence[str], index: dict[str, int] | None = None) -> list[list[int]]:
        """Each string's word indices (unknown words -> 1)."""
        index = self.index if index is None else index
        return [[index.get(w, 1) for w in tokenize(t)] for t in texts]

    def bag_of_words(self, texts: Sequence[str], index: dict[str, int] | None = None) -> np.ndarray:
        """float32 [N, V - 2]: log(1 + count) of each vocabulary word (padding and unknown left out)."""
        ids = self.encode(texts, index)
        out = np.zeros((len(ids), len(self.words)), dtype=np.float32)
        rows = np.repeat(np.arange(len(ids)), [len(r) for r in ids])
        if len(rows):
            np.add.at(out, (rows, np.concatenate([np.asarray(r, dtype=np.int64) for r in ids if r])), 1.0)
        return np.log1p(out[:, 2:])


def text_features(corpus: TextCorpus, train: np.ndarray, *, min_count: int = 1,
                  max_size: int | None = 5000) -> tuple[np.ndarray, Vocabulary]:
    """Bag-of-words features of every row over the vocabulary of the training rows `train` only."""
    vocabulary = Vocabulary.fit([corpus.texts[i] for i in train], min_count=min_count, max_size=max_size)
    return vocabulary.bag_of_words(corpus.texts), vocabulary
