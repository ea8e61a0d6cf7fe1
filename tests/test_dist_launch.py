"""The `--nproc` launcher and the rank environment (tamenet.dist): pure functions, no process started."""

import sys

import pytest

from tamenet.dist.group import Ranks, backend_for, ranks_from_env
from tamenet.dist.launch import DistributedError, available_cores, check_nproc, torchrun_argv, without_nproc


def test_without_nproc_removes_both_spellings_and_keeps_the_rest():
    assert without_nproc(["train", "--nproc", "2", "r.yaml", "--set", "a=1"]) == ["train", "r.yaml", "--set", "a=1"]
    assert without_nproc(["search", "--nproc=2", "--grid", "x=1,2"]) == ["search", "--grid", "x=1,2"]


def test_torchrun_argv_runs_this_python_on_one_machine():
    argv = torchrun_argv(2, ["train", "--nproc", "2"])
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in argv and "--nproc-per-node=2" in argv
    assert argv[-3:] == ["-m", "tamenet", "train"]


def test_check_nproc_accepts_up_to_the_cores_and_refuses_more():
    cores = available_cores()
    assert check_nproc(cores) == cores
    with pytest.raises(DistributedError, match=f"has {cores} core"):
        check_nproc(cores + 1)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(DistributedError, match="whole number"):
            check_nproc(bad)


def test_check_nproc_on_gpus_counts_devices():
    assert check_nproc(2, device="cuda", gpus=2) == 2
    with pytest.raises(DistributedError, match="0 GPU"):
        check_nproc(1, device="cuda", gpus=0)


def test_ranks_from_env():
    assert ranks_from_env({}) is None
    assert ranks_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    ranks = ranks_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert ranks == Ranks(rank=3, world_size=4, local_rank=1) and not ranks.is_main
    assert ranks_from_env({"WORLD_SIZE": "2", "RANK": "0"}).is_main
    with pytest.raises(DistributedError, match="RANK"):
        ranks_from_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(DistributedError, match="WORLD_SIZE"):
        ranks_from_env({"WORLD_SIZE": "two", "RANK": "0"})


def test_backend_for():
    assert backend_for("cpu") == "gloo" and backend_for("cuda:1") == "nccl"
