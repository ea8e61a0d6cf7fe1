"""Text augmentation (E2): each string operation against its definition, fresh strings per epoch and member,
training rows only (B4), and a population equal to its separate runs."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from tamenet.augment import text as T
from tamenet.augment.text_synonyms import SYNONYMS
from tamenet.train.text_audio_pieces import TextAugmentEpoch

LONG = " ".join(f"w{i}" for i in range(5000))
STORY = "The film was good. The actors were great! Was it long? I liked the end."


def test_word_deletion_deletes_at_its_rate():
    for p in (0.1, 0.3, 0.6):
        kept = T.delete_words(LONG, p, random.Random(1)).split()
        assert abs((1 - len(kept) / 5000) - p) < 0.025  # 5000 Bernoulli(p) draws: std below 0.007
        remaining = set(kept)
        assert kept == [w for w in LONG.split() if w in remaining]  # order kept, nothing new


def test_deletion_always_keeps_one_word_and_one_sentence():
    assert len(T.delete_words("just two", 1.0, random.Random(0)).split()) == 1
    assert T.delete_sentences(STORY, 1.0, random.Random(0)) in T.split_sentences(STORY)
    assert T.delete_words("alone", 0.9, random.Random(0)) == "alone"


def test_sentence_deletion_rate_and_shuffle_keeps_the_sentences():
    text = " ".join(f"Sentence {i}." for i in range(2000))
    kept = T.split_sentences(T.delete_sentences(text, 0.25, random.Random(2)))
    assert abs(1 - len(kept) / 2000 - 0.25) < 0.03
    shuffled = T.shuffle_sentences(STORY, 1.0, random.Random(3))
    assert Counter(T.split_sentences(shuffled)) == Counter(T.split_sentences(STORY)) and shuffled != STORY
    assert T.shuffle_sentences(STORY, 0.0, random.Random(3)) == STORY


def test_synonym_replacement_uses_the_map_and_keeps_case():
    out = T.replace_synonyms("Good movie, GOOD food", 1.0, random.Random(0))
    words = out.replace(",", "").split()
    assert words[0] in {s.capitalize() for s in SYNONYMS["good"]}
    assert words[1].lower() in SYNONYMS["movie"] and words[2].lower() in SYNONYMS["good"] and words[2].isupper()
    mine = {"cat": ["feline"]}
    assert T.replace_synonyms("The cat sat", 1.0, random.Random(0), mine) == "The feline sat"
    assert T.replace_synonyms("The cat sat", 0.0, random.Random(0), mine) == "The cat sat"


class Reverser:
    """A deterministic 'translator': the words reversed (forward) and reversed back with one word changed."""

    def translate(self, text: str) -> str:
        return " ".join(reversed(text.split()))


def test_back_translation_is_backward_of_forward_through_a_pluggable_translator():
    backward = lambda s: " ".join(reversed(s.split())).replace("good", "fine")  # noqa: E731
    paraphrase = T.BackTranslator(Reverser(), backward)
    assert T.back_translate("a good day", 1.0, random.Random(0), paraphrase) == "a fine day"
    assert T.back_translate("a good day", 0.0, random.Random(0), paraphrase) == "a good day"
    with pytest.raises(ValueError, match="needs a translator"):
        T.back_translate("x", 1.0, random.Random(0), None)
    with pytest.raises(TypeError, match="expected a function str -> str or an object with a translate"):
        T.BackTranslator(42, backward)("x")


def test_strings_are_fresh_each_epoch_and_reproducible():
    texts = [STORY] * 20
    ops = {"word_delete": 0.3, "sentence_shuffle": 0.5}
    first = T.augment_texts(texts, ops, seed=4, epoch=0)
    assert first == T.augment_texts(texts, ops, seed=4, epoch=0)
    assert first != T.augment_texts(texts, ops, seed=4, epoch=1)
    assert first != T.augment_texts(texts, ops, seed=5, epoch=0)


def test_unknown_text_op_lists_the_valid_ones_and_probabilities_are_checked():
    with pytest.raises(ValueError, match=r"unknown text augmentation 'typo' \(valid: sentence_delete, sentence_shuffle, "
                                         r"back_translate, synonym, word_delete\)"):
        T.augment_texts(["x"], {"typo": 0.1}, seed=0)
    with pytest.raises(ValueError, match=r"expected a probability in \[0, 1\], got 1.5"):
        T.augment_texts(["x"], {"word_delete": 1.5}, seed=0)


def test_preview_text_shows_each_string_then_its_augmented_copies():
    lines = T.preview_text(["Good film. Bad end."], {"sentence_shuffle": 1.0}, copies=2)
    assert lines[0] == "original: Good film. Bad end." and len(lines) == 3
    assert all(line.startswith("  aug ") for line in lines[1:])


class _Trainer:
    def __init__(self, seeds, X, train):
        from tamenet.nn import MemberRandom
        from tamenet.train.member_data import MemberData

        m = len(seeds)
        self.members, self.hyper = m, {}
        self.model = type("M", (), {"random": MemberRandom(seeds)})()
        self.state = type("S", (), {"epoch": 0})()
        self.data = MemberData("classification", X, torch.zeros(m, X.shape[1], dtype=torch.long), torch.arange(m),
                               train, train[:, :0], None, torch.ones(m))


def _tagged_featurize(texts):
    """One feature per row: 1 + the number of words 'heldout' (a tag only held-out strings carry)."""
    return [[1.0 + t.split().count("heldout")] for t in texts]


def test_only_training_rows_are_rewritten_and_no_held_out_string_reaches_them():
    X = torch.full((2, 6, 1), -7.0)  # rows 0-3 train, rows 4-5 held out (tagged 'heldout' in their strings)
    trainer = _Trainer([0, 1], X, torch.tensor([[0, 1, 2, 3]]))
    train_texts = [f"train row {i} words here" for i in range(4)]
    piece = TextAugmentEpoch(train_texts, _tagged_featurize, {"word_delete": [0.5, 0.0]})
    for epoch in range(3):
        trainer.state.epoch = epoch
        assert piece.begin_epoch(trainer) is False
        assert torch.equal(trainer.data.X[:, 4:], torch.full((2, 2, 1), -7.0))  # held-out rows untouched
        assert torch.equal(trainer.data.X[0, :4], torch.ones(4, 1))  # no held-out tag in any training row
    assert torch.equal(trainer.data.X[1], X[1])  # a member at strength 0 keeps its rows


def test_population_member_equals_its_separate_run(tmp_path):
    from tamenet.train.text_audio_fit import fit_augmented

    rng = random.Random(0)
    good, bad = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "dull"]
    lines = ["text\tlabel"]
    for i in range(80):
        words = good if i % 2 else bad
        lines.append(f"The {rng.choice(['film', 'food'])} was {rng.choice(words)}. It {rng.choice(['was', 'felt'])} "
                     f"{rng.choice(words)} indeed!\t{i % 2}")
    path = tmp_path / "reviews.tsv"
    path.write_text("\n".join(lines) + "\n")
    recipe = {"data": {"name": "text", "path": str(path), "text": "text", "target": "label"},
              "model": {"widths": [16], "dropout": 0.2}, "train": {"epochs": 3, "batch_size": 16, "device": "cpu"},
              "track": {"tensorboard": False, "plots": False, "checkpoint": False}}
    ops = {"word_delete": [0.2, 0.0], "synonym": [0.5, 0.3], "sentence_shuffle": [1.0, 0.0]}
    both = fit_augmented({**recipe, "seed": [3, 5]}, text=ops)
    alone = fit_augmented({**recipe, "seed": 5}, text={k: v[1] for k, v in ops.items()})
    pair = [r for r in both.history if r["member"] == 1]
    for a, b in zip(pair, alone.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, abs=1e-7)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5, abs=1e-7)
    first = [r["train_loss"] for r in both.history if r["member"] == 0]
    assert first != [r["train_loss"] for r in pair]


def test_the_recipe_section_holds_text_and_audio_strengths_as_member_axes_and_fit_refuses_them_on_other_data():
    from tamenet.api import fit
    from tamenet.config import Recipe, RecipeError, member_fields, parse
    from tamenet.select.search import split_grid

    paths = {f.path for f in member_fields()}
    assert {"augment.text.word_delete", "augment.audio.pitch"} <= paths
    recipe = parse(Recipe, {"augment": {"text": {"word_delete": 0.2}}})
    structures, numbers = split_grid(recipe, {"augment.text.word_delete": [0.0, 0.1, 0.3]})
    assert structures == [{}] and len(numbers) == 3
    with pytest.raises(RecipeError, match="augment.text.word_delete: expected a value <= 1.0"):
        parse(Recipe, {"augment": {"text": {"word_delete": 1.5}}})
    with pytest.raises(RecipeError, match="augment.text: text operations need text data .* got data set 'digits'"):
        fit({"augment": {"text": {"word_delete": 0.2}}})
