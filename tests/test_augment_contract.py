"""The augmentation contract (E5, B4): member m of an augmented population equals its separate run, and only
training rows are ever augmented; validation, test, early-stopping and scored cross-validation rows reach the
model untouched, and no transformed copy of a held-out row reaches training.

Leaks are caught by tagging: every row that enters an augmentation piece is looked up, exactly, among the pool's
rows, and must be one of its member's training rows; every row the model sees in evaluation must be a pool row
unchanged. A deliberately leaky batch (validation rows served as training rows) must be caught.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tamenet.api import fit
from tamenet.augment.image import ImageAugment
from tamenet.models import Population
from tamenet.select import cross_validate
from tamenet.train.member_data import MemberData

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
BASE = {
    "data": {"name": "digits", "test": 0.5},
    "model": {"kind": "mlp", "widths": [32], "dropout": 0.1},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 128, "epochs": 1, "device": "cpu"},
    "track": QUIET,
}


def _history(history: list[dict], member: int) -> np.ndarray:
    return np.array([[r["epoch"], r["train_loss"], r["val_loss"], r["val_accuracy"]] for r in history
                     if r["member"] == member])


def _assert_members_equal_separate_runs(population: dict, singles: list[dict]) -> None:
    pop = fit(population)
    for m, single in enumerate(singles):
        alone = fit(single)
        np.testing.assert_allclose(_history(pop.history, m), _history(alone.history, 0), rtol=1e-4, atol=1e-5,
                                   err_msg=f"member {m}")
        for name, value in alone.model.state_dict().items():
            if value.dim() >= 1:
                torch.testing.assert_close(pop.model.state_dict()[name][m], value[0], rtol=1e-4, atol=1e-5)


def _per_member(raw: dict, m: int) -> dict:
    """Member m's own recipe: every list in the augment section and the seed replaced by its m-th entry."""
    out = copy.deepcopy(raw)
    for section in out["augment"].values():
        for key, value in section.items():
            if isinstance(value, list):
                section[key] = value[m]
    out["seed"] = raw["seed"][m] if isinstance(raw["seed"], list) else raw["seed"]
    return out


def test_an_augmented_population_with_mixup_equals_its_members_separate_runs():
    raw = {**BASE, "model": {"kind": "cnn", "channels": [4], "dropout": 0.1}, "seed": [0, 1, 2], "augment": {
        "image": {"rotate": [0.0, 10.0, 20.0], "shift": 0.1, "erase": [0.0, 0.2, 0.3], "hflip": 0.5,
                  "elastic": [0.0, 0.5, 1.0], "brightness": 0.2, "p": [1.0, 0.5, 0.8]},
        "mix": {"kind": "mixup", "alpha": [0.2, 0.5, 1.0]}}}
    _assert_members_equal_separate_runs(raw, [_per_member(raw, m) for m in range(3)])


def test_a_shared_batch_population_with_cutmix_equals_separate_runs():
    raw = {**BASE, "seed": [4, 4],  # one seed: one shared batch order
           "augment": {"image": {"zoom": [0.0, 0.2], "noise": [0.1, 0.0], "blur": [0.0, 1.0]},
                       "mix": {"kind": "cutmix", "alpha": 1.0, "p": [0.5, 1.0]}}}
    _assert_members_equal_separate_runs(raw, [_per_member(raw, m) for m in range(2)])


class RowSpy:
    """Records, per augmentation call, which pool rows each member's batch holds (exact lookup), and every row
    the population sees in evaluation mode."""

    def __init__(self, monkeypatch) -> None:
        self.entered: list[tuple[MemberData, torch.Tensor]] = []
        self.evaluated: list[tuple[MemberData, torch.Tensor]] = []
        self.data: MemberData | None = None
        original = ImageAugment.__call__
        spy = self

        def call(piece, trainer, x, y):
            spy.data = trainer.data
            spy.entered.append((trainer.data, x.detach().clone()))
            return original(piece, trainer, x, y)

        monkeypatch.setattr(ImageAugment, "__call__", call)

        def pre_hook(module, args):
            if isinstance(module, Population) and not module.training and spy.data is not None:
                spy.evaluated.append((spy.data, args[0].detach().clone()))

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(pre_hook)

    def close(self) -> None:
        self.handle.remove()

    @staticmethod
    def rows_of(pool: torch.Tensor, x: torch.Tensor) -> list[set[int]]:
        """For each row of x [B, F]: the indices of the rows of `pool` [N, F] exactly equal to it (candidates by an
        integer hash of the float32 bits, exact in any summation order; then compared element by element)."""
        weights = torch.randint(1, 1 << 20, (pool.shape[1],), generator=torch.Generator().manual_seed(0))

        def key(t: torch.Tensor) -> torch.Tensor:
            return (t.float().contiguous().view(torch.int32).long() * weights).sum(-1)

        keys_pool, keys_x = key(pool), key(x)
        out = []
        for i, key in enumerate(keys_x.tolist()):
            near = torch.nonzero(keys_pool == key).flatten()
            out.append({int(j) for j in near if torch.equal(pool[j], x[i])})
        return out

    def check(self, test_rows: torch.Tensor | None = None) -> int:
        """Every augmented row is one of its member's training rows; every evaluated row a pool row (or one of
        `test_rows`, the test split scaled as the run scaled it) unchanged."""
        assert self.entered, "no training batch was augmented"
        checked = 0
        for data, x in self.entered:
            for m in range(data.members):
                xm = x[m] if x.dim() == 3 else x
                train = set(data.train[min(m, data.train.shape[0] - 1)].tolist())
                held_out = set(data.val[min(m, data.val.shape[0] - 1)].tolist()) - train
                for matches in self.rows_of(data.X[data.fold[m]], xm):
                    assert matches, "a row entering augmentation is no row of the pool"
                    assert matches & train, f"member {m} augmented a held-out row {sorted(matches & held_out)[:3]}"
                    checked += 1
        for data, x in self.evaluated:
            for m in range(data.members):
                xm = x[m] if x.dim() == 3 else x
                pool = data.X[data.fold[m]] if test_rows is None else torch.cat([data.X[data.fold[m]], test_rows])
                assert all(self.rows_of(pool, xm)), "a row evaluated in eval mode was transformed"
        return checked


AUG = {"image": {"rotate": [0.0, 15.0], "erase": 0.25, "shift": 0.1, "hflip": 0.5}}


def test_holdout_training_augments_training_rows_only_and_evaluates_originals(monkeypatch):
    spy = RowSpy(monkeypatch)
    try:
        result = fit({**BASE, "seed": [0, 1], "augment": AUG,
                      "train": {**BASE["train"], "epochs": 2, "early_stopping": {"monitor": "val_loss", "patience": 5}}})
        assert spy.check(test_rows=result.data.X_test) > 500
        evaluated = torch.cat([x for _, x in spy.evaluated])
        assert len(evaluated) >= 2 * len(result.data.X_val) + len(result.data.X_test)  # val each epoch, then test
    finally:
        spy.close()


def test_cross_validation_augments_each_folds_training_rows_never_its_stopping_or_scored_rows(monkeypatch):
    spy = RowSpy(monkeypatch)
    try:
        raw = {**BASE, "seed": 0, "augment": AUG,
               "train": {**BASE["train"], "epochs": 1, "early_stopping": {"monitor": "val_loss", "patience": 5}}}
        cross_validate(raw, folds=3)
        assert spy.check() > 500
        data = spy.data
        assert data.members == 2 * 3  # 2 candidates x 3 folds, each with its own training rows
        for m in range(data.members):
            scored = set(range(data.X.shape[1])) - set(data.train[m].tolist()) - set(data.val[m].tolist())
            assert len(scored) > 250 and not scored & set(data.train[m].tolist())
    finally:
        spy.close()


def test_the_spy_catches_a_batch_that_leaks_validation_rows_into_training(monkeypatch):
    spy = RowSpy(monkeypatch)

    def leaky_batch(self, positions):  # serves the validation rows as if they were training rows
        rows = self.val[0][positions.clamp(max=self.val.shape[1] - 1)]
        return self.X[0][rows], self.y[0][rows]

    monkeypatch.setattr(MemberData, "batch", leaky_batch)
    try:
        fit({**BASE, "data": {"name": "digits", "val": 0.5, "test": 0.5}, "seed": [0, 1], "augment": AUG,
             "train": {**BASE["train"], "epochs": 1}})
        with pytest.raises(AssertionError, match="augmented a held-out row"):
            spy.check()
    finally:
        spy.close()


def test_a_grid_over_augmentation_strengths_and_shares_is_one_population():
    from tamenet.config import population_size
    from tamenet.recipes import load_recipe
    from tamenet.select.search import parse_grid, population_recipe, split_grid

    recipe = load_recipe({**BASE, "augment": {"mix": {"kind": "mixup"}}})
    grid = parse_grid(["augment.image.rotate=0,10,20", "augment.mix.p=0.5,1"])
    structures, numbers = split_grid(recipe, grid)
    assert structures == [{}] and len(numbers) == 6  # no structural key: every candidate is a member
    population = population_recipe(recipe, structures[0], numbers)
    assert population_size(population) == 6
    assert population.augment.image.rotate == [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]
    assert population.augment.mix.p == [0.5, 1.0] * 3
