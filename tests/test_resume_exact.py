"""Resume after Ctrl-C is exact: whenever the interrupt falls (between steps mid-epoch, at an epoch's start,
during an epoch's bookkeeping), `fit(resume=...)` ends with the weights and history of an uninterrupted run,
bit for bit. A real SIGINT is sent, so the loop's deferral of interrupts is what is tested."""

from __future__ import annotations

import os
import signal

import pytest
import torch

import tamenet.api as api
from tamenet.api import fit
from tamenet.track import read_metrics, read_status
from tamenet.train.events import Listener

RECIPE = {
    "data": {"name": "moons", "n_samples": 120, "noise": 0.35},
    "model": {"widths": [16, 16], "dropout": 0.2},
    "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 16, "epochs": 5},
    "track": {"tensorboard": False, "plots": False},
    "seed": 0,
}



class SigintAt(Listener):
    """Sends this process a real SIGINT at one event: ("step", k), ("epoch_begin", e) or ("epoch_end", e)."""

    def __init__(self, event: str, at: int) -> None:
        self.event, self.at, self.sent = event, at, False

    def _fire(self, event: str, value: int) -> None:
        if not self.sent and event == self.event and value == self.at:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)

    def step_end(self, trainer, step: int) -> None:
        self._fire("step", step)

    def epoch_begin(self, trainer, epoch: int) -> None:
        self._fire("epoch_begin", epoch)

    def epoch_end(self, trainer, record) -> None:
        self._fire("epoch_end", record.epoch)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    result = fit(RECIPE, out=tmp_path_factory.mktemp("ref") / "run")
    steps = sum(1 for _ in range(0, 72, 16))
    return result, steps


@pytest.mark.parametrize("event, where, save_every", [
    ("step", "mid", 0.0),          # mid-epoch 3, last.pt saved after every epoch
    ("step", "mid", 1e9),          # mid-epoch 3, last.pt only from epoch 1 (the rate limit): epochs 2 redone
    ("step", "last", 0.0),         # after the last step of epoch 2, before its validation
    ("epoch_begin", 2, 0.0),       # at the start of epoch 3 (counted from 0)
    ("epoch_end", 2, 0.0),         # inside epoch 2's bookkeeping: held back until it is done
])
def test_an_interrupt_anywhere_then_resume_equals_the_uninterrupted_run(reference, tmp_path, monkeypatch,
                                                                         event, where, save_every):
    expected, steps = reference
    monkeypatch.setattr(api, "SAVE_EVERY_S", save_every)
    at = {"mid": 2 * steps + 2, "last": 2 * steps}.get(where, where) if event == "step" else where
    out = tmp_path / "run"
    part = fit(RECIPE, out=out, callbacks=[SigintAt(event, at)])
    assert part.summary["interrupted"] is True
    assert read_status(out)["state"] == "interrupted"
    done = part.summary["epochs_run"]
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, done + 1))  # whole epochs only
    assert done < RECIPE["train"]["epochs"]
    if event == "step" and where == "mid":
        assert "during epoch 3" in read_status(out)["message"]
    saved = torch.load(out / "last.pt", weights_only=True)["trainer"]["loop"]["epoch"]
    assert saved == (1 if save_every > 1 else done)  # never a half-trained epoch

    resumed = fit(resume=out)
    assert resumed.history == expected.history
    for name, value in expected.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert read_metrics(out) == read_metrics(expected.run_dir)
    assert read_status(out)["state"] == "finished"


def test_keep_last_false_removes_last_pt_of_a_finished_run_only(tmp_path):
    quick = {**RECIPE, "train": {**RECIPE["train"], "epochs": 2}}
    fit(quick, out=tmp_path / "a", keep_last=False)
    assert not (tmp_path / "a" / "last.pt").exists() and (tmp_path / "a" / "model.pt").exists()
    fit(quick, out=tmp_path / "b", callbacks=[SigintAt("epoch_end", 1)], keep_last=False)
    assert (tmp_path / "b" / "last.pt").exists()  # interrupted: kept for --resume
