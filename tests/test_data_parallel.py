"""Data-parallel training (I2) and the FSDP smoke test, with 2 gloo processes on the CPU.

One torchrun launch (`test_two_ranks_equal_one_process`) trains on both ranks a population with dropout, hidden
and input noise, BatchNorm, shards of unequal size (a batch of 33 rows: 17 + 16) and a last partial batch,
and a compaction (halving at epoch 2), then shards an exported member with FSDP; the test process trains
the same in one process and compares. Tolerance 1e-5 relative (max |a - b| / max |a| per tensor): the
ranks sum the same numbers in another order (the gradient all-reduce, the BatchNorm sums), float32
rounding (~1e-7 per operation) grown over a few dozen Adam steps; measured about 1e-6.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from tamenet.dist.data_parallel import ScaledGradient, check_batches, shard_bounds
from tamenet.dist.launch import DistributedError, failure_line
from tamenet.nn import MemberRandom

SRC = str(Path(__file__).resolve().parents[1] / "src")
TOLERANCE = 1e-5

RECIPE = {
    "data": {"val": 0.25, "test": 0.0},
    "model": {"kind": "mlp", "widths": [16, 12], "norm": "batch", "dropout": [0.1, 0.3, 0.2], "hidden_noise": 0.05},
    "train": {"batch_size": 33, "epochs": 4, "lr": 0.01, "optimizer": "adam", "input_noise": 0.1},
    "seed": [0, 1, 2], "track": {"plots": False},
}
"""152 training rows in batches of 33: shards of 17 and 16 rows, and a last batch of 20 (10 + 10)."""


def rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(203, 6)).astype("float32")
    return X, (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype("int64")


def single_process_run(out: Path | None = None):
    """The reference: one process, the same recipe, rows and halving (members 0..2, keep 1 after epoch 2)."""
    from tamenet.api import fit
    from tamenet.select.halving import Halving

    X, y = rows()
    return fit(RECIPE, X=X, y=y, out=out, callbacks=[Halving(rungs=[2], folds=1, eta=3)])


def fsdp_member() -> torch.nn.Module:
    """Member 1 of an untrained MLP population (no BatchNorm, no dropout: see tamenet.dist.fsdp), exported."""
    from tamenet.models import build_model
    from tamenet.models.export import export_member
    from tamenet.recipes import load_recipe

    recipe = load_recipe({"model": {"kind": "mlp", "widths": [32, 16], "norm": "none", "dropout": 0.0}, "seed": [4, 5]})
    return export_member(build_model(recipe.model, n_in=6, n_out=2, seeds=[4, 5]), 1)


WORKER = textwrap.dedent('''
    import os, sys, torch
    torch.set_num_threads(1)
    from test_data_parallel import fsdp_member, single_process_run
    from tamenet.dist.fsdp import full_state_dict, shard_member, train_sharded
    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    result = single_process_run(out=os.path.join(out, f"run_{rank}"))
    member = fsdp_member()
    X = torch.randn(50, 6, generator=torch.Generator().manual_seed(5))
    y = (X[:, 0] > 0).long()
    fsdp_history = train_sharded(shard_member(member), X, y, epochs=3, batch_size=15, lr=0.01)
    torch.save({"state": result.model.state_dict(), "history": result.history, "fsdp": full_state_dict(member),
                "fsdp_history": fsdp_history, "member_ids": result.summary.get("members")},
               os.path.join(out, f"rank_{rank}.pt"))
''')


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def test_two_ranks_equal_one_process(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n" + WORKER)
    job = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(worker), str(tmp_path)], env=env(), capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert job.returncode == 0, job.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank_{r}.pt", weights_only=False) for r in (0, 1)]
    # only rank 0 wrote its run directory
    assert (tmp_path / "run_0" / "summary.json").is_file() and not (tmp_path / "run_1").exists()
    # the ranks agree bit for bit: same weights, same history, same compaction
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["history"] == ranks[1]["history"]
    reference = single_process_run()
    assert ranks[0]["member_ids"] == reference.summary.get("members") == 1  # halving kept one of 3
    assert [(r["epoch"], r["member"]) for r in ranks[0]["history"]] == \
        [(r["epoch"], r["member"]) for r in reference.history]
    for key, value in reference.model.state_dict().items():
        assert relative(value, ranks[0]["state"][key]) < TOLERANCE, key
    for mine, theirs in zip(reference.history, ranks[0]["history"]):
        for key, value in mine.items():
            if isinstance(value, float) and value == value:
                assert abs(value - theirs[key]) <= TOLERANCE * max(abs(value), 1e-3), (key, mine, theirs)
    # FSDP: the sharded member trained as one process trains it on the global batch
    member = fsdp_member()
    X = torch.randn(50, 6, generator=torch.Generator().manual_seed(5))
    y = (X[:, 0] > 0).long()
    opt = torch.optim.Adam(member.parameters(), lr=0.01)
    member.train()
    history = []
    for epoch in range(3):
        order, total = torch.randperm(50, generator=torch.Generator().manual_seed(epoch)), 0.0
        for start in range(0, 50, 15):
            batch = order[start:start + 15]
            loss = torch.nn.functional.cross_entropy(member(X[batch]), y[batch])
            loss.backward()
            opt.step()
            opt.zero_grad()
            total += float(loss.detach()) * len(batch)
        history.append(total / 50)
    assert np.allclose(history, ranks[0]["fsdp_history"], rtol=TOLERANCE), (history, ranks[0]["fsdp_history"])
    for key, value in member.state_dict().items():
        assert relative(value, ranks[0]["fsdp"][key]) < TOLERANCE, key


def test_row_offset_draws_the_rows_of_the_global_batch():
    """Rank r holding rows [lo, hi) of a batch draws exactly those rows' dropout and noise numbers."""
    whole = MemberRandom([3, 8])
    whole.step = 5
    full_u, full_n = whole.uniform(7, (33, 4), rows=True), whole.normal(7, (33, 4), rows=True)
    for rank in (0, 1):
        lo, hi = shard_bounds(33, 2, rank)
        part = MemberRandom([3, 8])
        part.step, part.row_offset = 5, lo
        assert torch.equal(part.uniform(7, (hi - lo, 4), rows=True), full_u[:, lo:hi])
        assert torch.equal(part.normal(7, (hi - lo, 4), rows=True), full_n[:, lo:hi])
        # a weight's draws (no batch axis) are the same on every rank
        assert torch.equal(part.uniform(9, (4, 4)), whole.uniform(9, (4, 4)))


def test_shards_and_gradient_shares_give_the_global_mean():
    assert [shard_bounds(33, 2, r) for r in (0, 1)] == [(0, 17), (17, 33)]
    assert [shard_bounds(7, 3, r) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    losses = torch.randn(33, requires_grad=True)
    parts = []
    for rank in (0, 1):  # DDP averages the ranks' gradients: (1/N) sum_r scaled grad of rank r's mean
        lo, hi = shard_bounds(33, 2, rank)
        ScaledGradient.apply(losses[lo:hi].mean(), 2 * (hi - lo) / 33).backward()
        parts.append(losses.grad.clone() / 2)
        losses.grad = None
    assert torch.allclose(parts[0] + parts[1], torch.full((33,), 1 / 33))
    check_batches(152, 33, 2)
    with pytest.raises(DistributedError, match="last batch"):
        check_batches(100, 33, 2)  # 100 = 3 x 33 + 1
    with pytest.raises(DistributedError, match="train.batch_size"):
        check_batches(100, 1, 2)


def test_synced_batch_norm_on_one_rank_is_batch_norm(tmp_path):
    """The synchronized path (sums over a 1-process group) equals F.batch_norm, running averages included."""
    import torch.distributed as dist

    from tamenet.nn import BatchNorm

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        plain, synced = BatchNorm(2, 3), BatchNorm(2, 3)
        synced.synced = True
        x = torch.randn(2, 9, 3, requires_grad=True)
        a, b = plain(x), synced(x)
        assert torch.allclose(a, b, atol=1e-6)
        assert torch.allclose(plain.running_var, synced.running_var) and torch.allclose(plain.running_mean, synced.running_mean)
        ga = torch.autograd.grad(a.square().sum(), x)[0]
        gb = torch.autograd.grad(b.square().sum(), x)[0]
        assert torch.allclose(ga, gb, atol=1e-5)
    finally:
        dist.destroy_process_group()


def test_failure_line_names_the_rank_and_how():
    assert "rank 1 of the 2-process job was killed by SIGKILL" in failure_line(2, 1, -9)
    assert "--resume" in failure_line(2, 0, 3) and "exit code 3" in failure_line(2, 0, 3)


def _rank_pid(tag: str, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"DDP_TEST_TAG={tag}".encode() in environ and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def _epochs_written(run: Path) -> int:
    metrics = run / "metrics.csv"
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.is_file() else 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc (Linux)")
def test_killed_rank_ends_the_job_in_one_line_and_resume_continues(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {name: digits, val: 0.2, test: 0.1}\nmodel: {kind: mlp, widths: [64], norm: batch}\n"
                      "train: {batch_size: 64, epochs: 400, lr: 0.01}\ntrack: {plots: false, tensorboard: false}\n")
    tag = uuid.uuid4().hex
    job = subprocess.Popen([sys.executable, "-m", "tamenet", "train", str(recipe), "--nproc", "2", "--out", "run",
                            "--no-report"], env={**env(), "DDP_TEST_TAG": tag}, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (_epochs_written(tmp_path / "run") < 1 or not (tmp_path / "run" / "last.pt").is_file()) \
                and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
        pid = _rank_pid(tag, 1)
        assert pid is not None and job.poll() is None, "the job did not reach its first epoch"
        os.kill(pid, signal.SIGKILL)
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 2
    assert err.strip().splitlines()[-1].startswith("tamenet: rank 1 of the 2-process job was killed by SIGKILL")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml", "run"]  # rank 1 wrote nothing anywhere
    stopped_at = _epochs_written(tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["trainer"]["loop"]["epoch"]
    done = subprocess.run([sys.executable, "-m", "tamenet", "train", "--resume", "run", "--nproc", "2", "--no-report",
                           "--set", f"train.epochs={stopped_at + 2}"], env=env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    epochs = [int(line.split(",")[0]) for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, stopped_at + 3)) and saved <= stopped_at  # continued from last.pt, none lost


def test_a_rendezvous_that_cannot_be_reached_ends_in_one_line(tmp_path):
    """Rank 1 of a job whose rank 0 never starts: one line after --dist-timeout seconds, exit 2, no C++ log pages."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tamenet", "train", "--dist-timeout", "2", "--out", "run"],
                          env={**env(), "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                               "MASTER_PORT": str(port)}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("tamenet train: error: rank 1 of 2 could not join") and "within 2 s" in lines[0]
    assert f"127.0.0.1:{port}" in lines[0] and time.monotonic() - started < 60
    assert not any(tmp_path.iterdir())  # nothing written


def test_this_rank_only_keeps_fit_in_one_process(monkeypatch):
    """Under torchrun, `fit` inside `this_rank_only()` neither joins nor wraps (a search's refit on rank 0)."""
    from tamenet.dist import data_parallel

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with data_parallel.this_rank_only():
        assert data_parallel.start(torch.device("cpu")) is None


def test_norms_with_unsynchronized_statistics_are_refused():
    from tamenet.dist.data_parallel import sync_batch_norms
    from tamenet.nn import BatchNorm, InstanceNorm, SwitchNorm

    cpu = torch.device("cpu")
    model = torch.nn.Sequential(BatchNorm(2, 3), torch.nn.Linear(3, 3), BatchNorm(2, 3))
    assert sync_batch_norms(model, cpu) == 2 and all(m.synced for m in (model[0], model[2]))
    assert not BatchNorm(2, 3).synced  # a flag of the modules of a data-parallel job only
    for bad, needle in ((SwitchNorm(2, 3), "SwitchNorm"), (InstanceNorm(2, 3, track_running_stats=True), "InstanceNorm"),
                        (torch.nn.BatchNorm1d(3), "SyncBatchNorm runs on GPUs")):
        with pytest.raises(DistributedError, match=needle):
            sync_batch_norms(torch.nn.Sequential(bad), cpu)
    assert sync_batch_norms(torch.nn.Sequential(InstanceNorm(2, 3)), cpu) == 0


def test_nproc_is_checked_before_torch_loads(tmp_path):
    code = ("import sys\nfrom tamenet.cli import main\nassert main(['train', '--nproc', '99']) == 2\n"
            "assert main(['train', '--nproc', '0']) == 2\nassert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], env=env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--nproc 99: one process per CPU core" in done.stderr and not any(tmp_path.iterdir())
