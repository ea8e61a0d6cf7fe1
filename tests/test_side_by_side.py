"""Populations trained side by side on threads (train/side_by_side.py, `run_cv(side_by_side=N)`).

Reference: the same cross-validation trained as one population on one thread; the parts' numbers must be its
numbers bit for bit (scores, best epochs, stops, divergence, every metrics row), and every callback must run on
the calling thread, in epoch order.
"""

from __future__ import annotations

import struct
import threading

import pytest
import torch

from tamenet.recipes import load_recipe
from tamenet.select import kfold, make_pool, run_cv, search
from tamenet.train.events import Listener
from tamenet.train.side_by_side import MIN_MEMBERS_PER_WORKER, side_by_side_workers, split_members

pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe(**train):
    """3 candidates (the last diverges: lr 1e5) x 6 folds = 18 members; dropout, input noise, early stopping."""
    return load_recipe({
        "data": {"name": "moons", "n_samples": 240},
        "model": {"widths": [16, 16], "dropout": 0.2},
        "penalty": {"l2": [1e-3, 1e-2, 0.0]},
        "train": {"optimizer": "sgd", "lr": [0.1, 0.2, 1e5], "momentum": 0.9, "epochs": 8, "batch_size": 32,
                  "input_noise": 0.1, "early_stopping": {"patience": 2}, **train},
        "track": {"tensorboard": False, "plots": False},
        "seed": 0,
    })


def _run(side_by_side, callbacks=None, **train):
    recipe = _recipe(**train)
    pool = make_pool(recipe)
    return run_cv(recipe, pool, kfold(pool.y, k=6, seed=0), side_by_side=side_by_side, callbacks=callbacks)


def _exact(value):
    """`value` with every float as its exact bits (NaN included, which == would never match)."""
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


def _same(a, b):
    assert _exact(a.scores) == _exact(b.scores)  # every member's fit and scored loss and accuracy, exactly
    assert a.best_epoch == b.best_epoch and a.stopped == b.stopped and a.diverged_at == b.diverged_at
    assert a.epochs == b.epochs
    assert _exact(a.history) == _exact(b.history)  # every metrics row, in one population's order


def test_parts_side_by_side_equal_one_population_bit_for_bit():
    alone, apart = _run(1), _run(2)
    assert (alone.memory["side_by_side"], len(alone.chunks)) == (1, 1)
    assert (apart.memory["side_by_side"], len(apart.chunks)) == (2, 2)  # the path under test ran
    assert apart.chunks == [list(range(0, 18, 2)), list(range(1, 18, 2))]  # dealt round robin
    assert any(d is not None for d in alone.diverged_at) and any(alone.stopped)  # both kinds of leaving covered
    _same(alone, apart)


def test_callbacks_run_on_the_calling_thread_in_epoch_order():
    seen = []

    def callback(record, trainer):
        seen.append((threading.current_thread() is threading.main_thread(), record.epoch, tuple(trainer.member_ids)))

    run = _run(2, callbacks=[callback])
    assert seen and all(on_main for on_main, _, _ in seen)
    epochs = [epoch for _, epoch, _ in seen]
    assert epochs == sorted(epochs)  # lockstep: every part's epoch e before any part's epoch e + 1
    parts = {ids[0] % 2 for _, _, ids in seen}
    assert parts == {0, 1} and run.memory["side_by_side"] == 2


class _StepCounter(Listener):
    def __init__(self):
        self.threads = set()
        self.steps = 0

    def step_end(self, trainer, step):
        self.threads.add(threading.current_thread().name)
        self.steps += 1


def test_a_trainer_with_a_step_listener_trains_alone_with_the_same_numbers():
    counter = _StepCounter()
    alone = _run(1)
    apart = _run(2, callbacks=[counter])
    assert counter.steps > 0 and counter.threads == {threading.main_thread().name}  # never on a worker
    _same(alone, apart)


def test_a_workers_error_reaches_the_caller_and_the_thread_count_comes_back(monkeypatch):
    import tamenet.train.loop as loop

    original = loop.Trainer.train_epoch

    def failing(self):
        if self.member_ids[0] == 1 and self.state.epoch == 2:
            raise ValueError("part 1 failed in epoch 3")
        return original(self)

    monkeypatch.setattr(loop.Trainer, "train_epoch", failing)
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="part 1 failed in epoch 3"):
        _run(2)
    assert torch.get_num_threads() == before


def test_search_passes_side_by_side_and_halving_keeps_one_population():
    raw = {"data": {"name": "moons", "n_samples": 160}, "model": {"widths": [8]},
           "train": {"epochs": 2, "batch_size": 32}, "track": {"tensorboard": False, "plots": False}}
    grid = {"penalty.l2": [0.0, 1e-3, 1e-2, 1e-1]}
    split = search(raw, grid=grid, folds=4, refit=False, side_by_side=2)
    whole = search(raw, grid=grid, folds=4, refit=False, side_by_side=1)
    assert split["memory"]["side_by_side"] == 2 and whole["memory"]["side_by_side"] == 1
    assert [r["cv_loss_folds"] for r in split["candidates"]] == [r["cv_loss_folds"] for r in whole["candidates"]]
    halved = search(raw, grid=grid, folds=4, refit=False, side_by_side=2, halving=2)
    assert halved["memory"]["side_by_side"] == 1  # candidates ranked while they train: never split


@pytest.mark.parametrize("members, threads, device, parts", [
    (130, 2, "cpu", 2),
    (130, 16, "cpu", 130 // MIN_MEMBERS_PER_WORKER),
    (31, 2, "cpu", 1),  # two parts would hold fewer than 16 members each
    (32, 2, "cpu", 2),
    (130, 8, "cuda", 1),
    (1, 2, "cpu", 1),
])
def test_how_many_parts_by_default(members, threads, device, parts):
    assert side_by_side_workers(members, threads=threads, device=device) == parts


def test_the_default_split_leaves_a_small_population_whole_and_an_explicit_one_splits_it(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the default: one part per torch thread
    assert _run(None).memory["side_by_side"] == 1  # 18 members: two parts would hold 9 each, below 16
    assert _run(3).memory["side_by_side"] == 3


def test_split_members_deals_round_robin_and_keeps_every_member_once():
    assert split_members(list(range(7)), 2) == [[0, 2, 4, 6], [1, 3, 5]]
    assert split_members([4, 5], 5) == [[4], [5]]
    parts = split_members(list(range(130)), 3)
    assert sorted(m for p in parts for m in p) == list(range(130))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="at least one part"):
        split_members([1], 0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_side_by_side_is_refused(bad):
    with pytest.raises(ValueError, match="side_by_side: expected a positive number of threads"):
        _run(bad)
