"""Iterative magnitude pruning after training (H1, the lottery ticket): masks, sparsity, rewinding, the contract,
and the `tamenet prune` / `tamenet distill` commands."""

import csv
import math

import numpy as np
import pytest
import torch
import yaml

from tamenet.cli import main
from tamenet.compress.lottery import iterative_pruning, next_masks, round_sparsity
from tamenet.compress.prune import pruned_count
from tamenet.train.events import Listener

from test_training import QUIET, _with

BASE = {
    "data": {"name": "moons", "n_samples": 160, "noise": 0.3},
    "model": {"widths": [16, 16], "activation": "relu"},
    "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 32, "epochs": 2, "weight_decay": 1e-2},
    "track": QUIET,
    "seed": 0,
}
LAYERS = ("hidden.0.weight", "hidden.1.weight", "output.weight")


class Starts(Listener):
    """Every round's member tensors as training begins, and round 0's after its first epoch."""

    def __init__(self) -> None:
        self.starts, self.after_first = [], None

    def train_begin(self, trainer) -> None:
        self.starts.append({k: v.detach().clone() for k, v in trainer.model.member_tensors().items()})

    def epoch_end(self, trainer, record) -> None:
        if len(self.starts) == 1 and record.epoch == 1:
            self.after_first = {k: v.detach().clone() for k, v in trainer.model.member_tensors().items()}


def _mask(model, name):
    return model.pruning.mask(name).bool()


def test_next_masks_remove_the_smallest_survivors_exactly_and_only_shrink():
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(2, 10, 7, generator=g), torch.randn(2, 7, 3, generator=g)]
    ones = [torch.ones_like(w, dtype=torch.bool) for w in weights]
    first = next_masks(weights, ones, torch.tensor([0.2, 0.5]))
    for w, keep in zip(weights, first):
        for m, s in enumerate([0.2, 0.5]):
            n = w[m].numel()
            assert int((~keep[m]).sum()) == math.floor(s * n + 1e-9)
            assert w[m].abs()[~keep[m]].max() <= w[m].abs()[keep[m]].min()
    trained = [w.clone() for w in weights]
    trained[0][0][first[0][0]] = trained[0][0][first[0][0]] * 0.1  # survivors shrink, one to exactly 0
    trained[0][0].view(-1)[int(first[0][0].view(-1).nonzero()[0])] = 0.0
    second = next_masks(trained, first, torch.tensor([round_sparsity(0.2, 2), round_sparsity(0.5, 2)]))
    for w, old, new in zip(weights, first, second):
        assert torch.all(new <= old)  # a pruned weight never comes back, even behind a survivor at exactly 0
        assert int((~new[0]).sum()) == pruned_count(torch.tensor([0.36]), w[0].numel())[0]
        assert int((~new[1]).sum()) == pruned_count(torch.tensor([0.75]), w[1].numel())[0]
    together = next_masks(weights, ones, torch.tensor([0.5, 0.5]), scope="global")
    assert [int(sum((~k[m]).sum() for k in together)) for m in range(2)] == [45, 45]  # floor(0.5 * 91)
    kept = torch.cat([w[0].abs()[k[0]] for w, k in zip(weights, together)])
    gone = torch.cat([w[0].abs()[~k[0]] for w, k in zip(weights, together)])
    assert gone.max() <= kept.min()
    random1 = next_masks(weights, ones, torch.tensor([0.2, 0.2]), method="random", seeds=[0, 1])
    random2 = next_masks(weights, random1, torch.tensor([0.36, 0.36]), method="random", seeds=[0, 1])
    assert all(torch.all(b <= a) for a, b in zip(random1, random2))
    assert int((~random2[0][0]).sum()) == math.floor(0.36 * 70 + 1e-9)


def test_rounds_shrink_the_masks_to_the_sparsity_keep_zeros_and_start_as_their_arm_says():
    rate, rounds = 0.3, 3
    starts = Starts()
    result = iterative_pruning(BASE, rounds=rounds, rate=rate, rewind=["init", "reinit", "keep"],
                               callbacks=[starts])
    theta0 = starts.starts[0]
    assert len(result.models) == rounds + 1 and result.models[1].members == 3
    for r in range(1, rounds + 1):
        model, start = result.models[r], starts.starts[r]
        for name in LAYERS:
            mask = _mask(model, name)
            before = _mask(result.models[r - 1], name) if r > 1 else torch.ones_like(mask)
            assert torch.all(mask <= before), (r, name)  # masks only shrink
            n = mask[0].numel()
            for m in range(3):
                pruned = int((~mask[m]).sum())
                assert pruned == math.floor(round_sparsity(rate, r) * n + 1e-9)
                assert abs(pruned - (1 - (1 - rate) ** r) * n) <= 1  # 1 - (1 - rate)^r within one weight
                assert torch.all(model.member_tensors()[name][m][~mask[m]] == 0)  # exactly zero after training
                assert torch.all(start[name][m][~mask[m]] == 0)
            init, reinit, keep = (start[name][m][mask[m]] for m in range(3))
            assert torch.equal(init, theta0[name][0][mask[0]])  # rewound exactly to the initial values
            assert not torch.equal(reinit, theta0[name][0][mask[1]]) and torch.count_nonzero(reinit) == reinit.numel()
            previous = result.models[r - 1].member_tensors()[name][2 if r > 1 else 0]
            assert torch.equal(keep, previous[mask[2]])  # fine-tuning starts from the trained survivors
    assert [row["sparsity"] for row in result.rows if row["round"] == rounds] == pytest.approx(
        [1 - (1 - rate) ** rounds] * 3, abs=0.01)


def test_epoch_rewind_starts_the_init_arm_at_epoch_k_and_the_dense_arm_retrains_round_0():
    starts = Starts()
    result = iterative_pruning(_with(BASE, **{"train.epochs": 3}), rounds=1, rate=0.5, rewind="init", dense=True,
                               epoch_rewind=1, callbacks=[starts])
    model, start = result.models[1], starts.starts[1]
    for name in LAYERS:
        mask = _mask(model, name)
        assert torch.equal(start[name][0][mask[0]], starts.after_first[name][0][mask[0]])
        assert torch.all(mask[1]) and torch.equal(start[name][1], starts.starts[0][name][0])
    dense = [row for row in result.rows if row["arm"] == "dense"]
    assert dense[0]["test_loss"] == pytest.approx(dense[1]["test_loss"], rel=1e-5)
    assert dense[1]["sparsity"] == 0.0 and result.rows[-2]["sparsity"] == pytest.approx(0.5, abs=0.01)


def _figures(rows, arm, seed):
    return np.array([[r["round"], r["sparsity"], r["val_loss"], r["test_loss"]] for r in rows
                     if r["arm"] == arm and r["seed"] == seed])


def test_arms_and_seeds_as_one_population_equal_their_separate_runs():
    seeds, modes = [0, 1], ["init", "reinit"]
    together = iterative_pruning(_with(BASE, seed=seeds), rounds=2, rate=0.5, rewind=modes, dense=True)
    final = together.models[-1].member_tensors()
    for j, seed in enumerate(seeds):
        for a, mode in enumerate(modes):
            alone = iterative_pruning(_with(BASE, seed=seed), rounds=2, rate=0.5, rewind=mode)
            np.testing.assert_allclose(_figures(together.rows, mode, seed), _figures(alone.rows, mode, seed),
                                       rtol=1e-4, atol=1e-6, err_msg=f"{mode} seed {seed}")
            for name, value in alone.models[-1].member_tensors().items():
                torch.testing.assert_close(final[name][j * 3 + a], value[0], rtol=1e-4, atol=1e-6, msg=name)
        dense = _figures(together.rows, "dense", seed)
        np.testing.assert_allclose(dense[1:, 1:], np.repeat(dense[:1, 1:], 2, axis=0), rtol=1e-4, atol=1e-6)


def test_the_prune_command_writes_a_run_per_round_and_distill_trains_students(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_with(BASE, track={"tensorboard": False, "plots": False})))
    assert main(["prune", "r.yaml", "--rounds", "2", "--rate", "0.5", "--rewind", "init,keep", "--out", "lot"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out[:3]] == [["round", "0/2"], ["round", "1/2"], ["round", "2/2"]]
    assert "sparsity 0.7500" in out[2] and "init" in out[2] and "keep" in out[2]
    rows = list(csv.DictReader((tmp_path / "lot" / "rounds.csv").open()))
    assert len(rows) == 3 * 2 and rows[-1]["run"] == "round-02"
    assert main(["evaluate", "lot/round-02"]) == 0
    assert main(["prune", "lot/round-00", "--rounds", "1", "--rewind", "reinit", "--out", "again"]) == 0
    capsys.readouterr()
    # distillation from the round-0 run: two temperatures as two members of one student population
    assert main(["distill", "--teacher", "lot/round-00", "r.yaml", "--temperature", "1,4", "--alpha", "0.7",
                 "--set", "model.widths=[4]", "--out", "student", "--no-report"]) == 0
    assert "run directory: student" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "student" / "recipe.yaml").read_text())
    assert saved["distill"]["temperature"] == [1, 4] and saved["distill"]["alpha"] == 0.7
    # a teacher of other classes: one line, exit 2, no run directory
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.normal(size=(60, 2)), np.arange(60) % 3])
    np.savetxt(tmp_path / "three.csv", table, delimiter=",", header="x0,x1,y", comments="", fmt=["%.5f", "%.5f", "%d"])
    code = main(["distill", "--teacher", "lot/round-00", "--set", "data.name=csv", "--set", "data.path=three.csv",
                 "--set", "data.target=y", "--set", "model.widths=[4]", "--out", "bad"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "classes" in err[0] and not (tmp_path / "bad").exists()
