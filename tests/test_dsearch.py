"""Searches spread over processes (select/ranks.py): chunks dealt round robin over the ranks, scores exchanged,
the main rank alone choosing and writing; and Optuna studies shared through a storage URL.

References: the one-process search (every spread one must reproduce it bit for bit, the chunked == unchunked
property of select/cv.py carried over processes) and Optuna's own study in the storage file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

from tamenet.cli import main
from tamenet.recipes import load_recipe
from tamenet.select import make_pool, run_cv, search
from tamenet.select.cv import _Scores, candidate_table
from tamenet.select.ranks import RemoteChunk, Spread, absorb, chunk_part, chunks_for_rank, spread_chunks
from tamenet.select.splits import kfold

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parents[1] / "src"

RAW = {
    "data": {"name": "moons", "n_samples": 120, "noise": 0.2},
    "model": {"widths": [8], "norm": "batch", "dropout": 0.1},
    "train": {"optimizer": "adam", "lr": 0.02, "epochs": 6, "batch_size": 32, "input_noise": 0.1,
              "early_stopping": {"patience": 2}},
    "penalty": {"l2": [0.0, 0.03, 0.3, 0.0, 0.03, 0.3]},
    "track": {"tensorboard": False, "plots": False},
    "seed": [1, 1, 1, 2, 2, 2],
}
"""Six candidates x 3 folds: dropout, input noise, batch norm and early stopping, all seeded per member."""


# ================================================================== the assignment, without processes


@pytest.mark.parametrize("members, size, group, world, sizes", [
    (18, 18, 1, 2, [9, 9]),          # one chunk fits the memory: cut in two for two ranks
    (18, 18, 3, 4, [6, 6, 3, 3]),    # whole candidates of 3 folds: 6 candidates over 4 ranks, 2-2-1-1
    (18, 4, 1, 2, [4, 4, 4, 3, 3]),  # the memory's chunks (at most 4) are already more than the ranks
    (12, 6, 3, 2, [6, 6]),           # memory and ranks agree
    (3, 3, 3, 2, [3]),               # one candidate cannot be cut: one chunk, the other rank idles
    (7, 7, 1, 1, [7]),               # one rank: unchanged
])
def test_spread_chunks_give_every_rank_a_chunk_within_the_budget(members, size, group, world, sizes):
    chunks = spread_chunks(members, size, group=group, world=world)
    assert [len(c) for c in chunks] == sizes
    assert [m for c in chunks for m in c] == list(range(members))  # consecutive, every member once
    assert all(len(c) <= size and len(c) % group == 0 for c in chunks)
    assert len(chunks) >= min(world, members // group)


def test_spread_chunks_refuse_counts_below_one():
    with pytest.raises(ValueError, match="positive counts"):
        spread_chunks(0, 1, group=1, world=2)


def test_chunks_for_rank_is_round_robin_and_covers_every_chunk_once():
    assert chunks_for_rank(5, 0, 2) == [0, 2, 4] and chunks_for_rank(5, 1, 2) == [1, 3]
    assert chunks_for_rank(1, 1, 2) == []
    dealt = sorted(c for r in range(3) for c in chunks_for_rank(10, r, 3))
    assert dealt == list(range(10))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        chunks_for_rank(3, 2, 2)


def test_a_chunk_part_written_into_another_ranks_scores_restores_them():
    sent = _Scores(4, "accuracy")
    for m, value in ((1, 0.5), (3, 0.75)):
        sent.values["scored"]["accuracy"][m] = value
        sent.best_epoch[m], sent.epochs[m], sent.stopped[m], sent.dropped_at[m] = m, 2 * m, True, m + 1
    trainer = SimpleNamespace(history=[{"epoch": 1, "member": 1}], state=SimpleNamespace(wall_time=1.5,
                                                                                         interrupted=False, epoch=6))
    part = json.loads(json.dumps(chunk_part(sent, trainer, [1, 3], rank=1)))  # plain values: it can travel
    received = _Scores(4, "accuracy")
    chunk = absorb(received, part)
    assert isinstance(chunk, RemoteChunk) and chunk.member_ids == [1, 3] and chunk.rank == 1
    assert chunk.history == trainer.history and chunk.state.wall_time == 1.5 and chunk.state.epoch == 6
    assert received.values["scored"]["accuracy"][1::2] == [0.5, 0.75]
    assert received.best_epoch == [0, 1, 0, 3] and received.epochs == [0, 2, 0, 6]
    assert received.stopped == [False, True, False, True] and received.dropped_at == [None, 2, None, 4]


class _Captured(Exception):
    pass


class _FakeSpread(Spread):
    """A rank whose exchange hands back what the test gives it (rank 1 first records its parts and stops)."""

    def __init__(self, rank: int, world: int, others: list | None = None) -> None:
        super().__init__(rank, world)
        self.others, self.sent = others, None

    def exchange(self, parts):
        self.sent = parts
        if self.others is None:
            raise _Captured
        return [*parts, *self.others]


def test_two_ranks_in_turn_reproduce_the_one_process_cross_validation_exactly():
    recipe = load_recipe(RAW)
    pool = make_pool(recipe)
    folds = kfold(pool.y, k=3, seed=0)
    whole = run_cv(recipe, pool, folds)
    assert len(whole.chunks) == 1 and any(whole.stopped) and len(set(whole.scores["scored"]["loss"])) > 6
    second = _FakeSpread(1, 2)
    with pytest.raises(_Captured):
        run_cv(recipe, pool, folds, spread=second)
    assert [p["members"] for p in second.sent] == [list(range(9, 18))]  # rank 1: the second chunk of 9
    first = run_cv(recipe, pool, folds, spread=_FakeSpread(0, 2, others=second.sent))
    assert first.chunks == [list(range(9)), list(range(9, 18))] and isinstance(first.trainers[1], RemoteChunk)
    assert first.scores == whole.scores
    assert first.best_epoch == whole.best_epoch and first.stopped == whole.stopped and first.epochs == whole.epochs
    assert [(r["member"], r["epoch"], r["train_loss"], r["val_loss"]) for r in first.history] == [
        (r["member"], r["epoch"], r["train_loss"], r["val_loss"]) for r in whole.history]
    assert candidate_table(first) == candidate_table(whole)


def test_halving_is_refused_over_ranks():
    recipe = load_recipe(RAW)
    pool = make_pool(recipe)
    with pytest.raises(ValueError, match="halving"):
        run_cv(recipe, pool, kfold(pool.y, k=3, seed=0), halving_eta=3, spread=_FakeSpread(0, 2, others=[]))


# ================================================================== two real processes (gloo, torchrun)


SPREAD_RAW = {**RAW, "penalty": {"l2": 0.0}, "seed": 1}
SPREAD_ARGV = ["search", "r.yaml", "--grid", "penalty.l2=0,0.03,0.3", "--grid", "seed=1,2", "--folds", "3", "--out", "two",
               "--no-report"]


@pytest.fixture(scope="module")
def one_process_search(tmp_path_factory, one_thread):
    """The reference: the same search in this process, one population (6 candidates x 3 folds)."""
    folder = tmp_path_factory.mktemp("one")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return search(SPREAD_RAW, grid=["penalty.l2=0,0.03,0.3", "seed=1,2"], folds=3, out="one")
    finally:
        os.chdir(cwd)


def _same_search(two: dict, one: dict) -> None:
    assert two["processes"] == 2 and two["memory"]["chunks"] == [2] and one["memory"]["chunks"] == [1]
    assert two["candidates"] == json.loads(json.dumps(one["candidates"]))  # every score, bit for bit
    assert two["best"]["candidate"] == one["best"]["candidate"]
    assert len({row["cv_accuracy_mean"] for row in one["candidates"]}) > 1  # a choice that could differ
    assert two["refit"] == json.loads(json.dumps(one["refit"]))


def test_search_on_two_processes_equals_the_one_process_search_and_only_rank_0_writes(tmp_path, one_process_search):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(SPREAD_RAW))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "tamenet", *SPREAD_ARGV, "--nproc", "2"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "spread over 2 processes" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml", "two"]  # rank 1 wrote nothing, anywhere
    _same_search(json.loads((tmp_path / "two" / "search.json").read_text()), one_process_search)
    assert (tmp_path / "two" / "refit").is_dir() and json.loads((tmp_path / "two" / "status.json").read_text())[
        "state"] == "finished"


def test_two_torchrun_agents_meet_at_the_rendezvous_as_two_machines_would(tmp_path, one_process_search):
    """docs/scaling.md's several-machine command, with two "machines" on this one: two torchrun agents started
    apart, `--nnodes 2 --nproc-per-node 1`, c10d's rendezvous at 127.0.0.1, each in its own folder with its own copy
    of the recipe. They find each other, the search equals the one-process search, and only the folder of the
    agent that got rank 0 holds the run directory."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    agents = []
    for node in ("machine0", "machine1"):
        (tmp_path / node).mkdir()
        (tmp_path / node / "r.yaml").write_text(yaml.safe_dump(SPREAD_RAW))
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend",
             "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-machines", "--rdzv-conf",
             "read_timeout=30,join_timeout=60", "-m", "tamenet", *SPREAD_ARGV],
            cwd=tmp_path / node, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for agent in agents:
        _, err = agent.communicate(timeout=300)
        assert agent.returncode == 0, err[-3000:]
    written = [node for node in ("machine0", "machine1") if (tmp_path / node / "two").exists()]
    assert len(written) == 1, written  # rank 0's machine only
    assert sorted(p.name for p in (tmp_path / ({"machine0", "machine1"} - set(written)).pop()).iterdir()) == ["r.yaml"]
    _same_search(json.loads((tmp_path / written[0] / "two" / "search.json").read_text()), one_process_search)


# ================================================================== Optuna storage


def test_two_invocations_on_one_sqlite_study_run_the_requested_trials_together(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    raw = {**RAW, "penalty": {"l2": 0.0}, "seed": 1, "train": {**RAW["train"], "epochs": 3}}
    options = dict(space=["train.lr=0.003:0.3:log"], batch=2, folds=2, refit=False, storage=url, study_name="s")
    first = search(raw, trials=3, **options)
    second = search(raw, trials=5, **options)  # the study's total: this one runs the 2 missing trials
    assert first["trials"]["this_process"] == 3 and second["trials"]["this_process"] == 2
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({t.params["train.lr"] for t in study.trials}) == 5  # the second process proposed new values
    rows = second["candidates"]
    assert [r["trial"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["population"] is None for r in rows] == [True, True, True, False, False]
    drop = ("population", "candidate")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows[:3]] == [
        {k: v for k, v in r.items() if k not in drop} for r in first["candidates"]]
    for row in rows:  # the table is the study's: each trial's value is its cross-validated accuracy
        assert study.trials[row["trial"]].value == row["cv_accuracy_mean"]
    assert second["best"]["cv_accuracy_mean"] == study.best_value
    assert second["trials"]["storage"] == url and second["trials"]["study"] == "s"


def test_a_rendezvous_that_cannot_be_reached_ends_in_one_line(tmp_path, monkeypatch, capsys):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**RAW, "penalty": {"l2": 0.0}, "seed": 1}))
    monkeypatch.chdir(tmp_path)
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    assert main(["cv", "r.yaml", "--join-timeout", "1", "--out", "never"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # above it: torch's own c10d log lines
    assert last.startswith("tamenet cv: error: rank 1 of 2 could not join") and f"127.0.0.1:{port}" in last
    assert "within 1 s" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]
