"""Explicit member state: compaction equals a fresh population of the kept members; a user's module keeps its
best weights; the loop's events arrive in order; the per-member keys have one source of truth."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from tamenet.api import fit
from tamenet.config import PerMember, Recipe, member_fields
from tamenet.data import prepare
from tamenet.models import build_model
from tamenet.recipes import load_recipe, select_members
from tamenet.select.search import NUMERIC_KEYS
from tamenet.select.trials import INTEGER_KEYS
from tamenet.train import HYPER_FIELDS, Trainer, member_seeds
from tamenet.train.events import Controller, Listener
from tamenet.train.member_data import MemberData

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}

POPULATION = {
    "data": {"name": "digits"},
    "model": {"widths": [24, 24], "norm": "batch", "dropout": [0.0, [0.1, 0.3, 0.0, 0.5], 0.2]},
    "penalty": {"l2": [0.0, 1e-3, 1e-2, 1e-4]},
    "constraints": {"max_norm": [0.0, 2.0, 3.0, 0.0]},
    "train": {"optimizer": "adam", "lr": [1e-3, 2e-3, 5e-3, 1e-2], "batch_size": 128, "epochs": 3,
              "clip": {"by": "norm", "max": [1.0, 2.0, 0.5, 5.0]},
              "early_stopping": {"patience": None, "restore_best": False}},
    "track": QUIET,
    "seed": [0, 1, 2, 3],
}


def _trainer(recipe: Recipe, callbacks=None) -> Trainer:
    data = prepare(recipe.data)
    torch.manual_seed(0)
    model = build_model(recipe.model, n_in=data.n_features, n_out=data.n_outputs, seeds=member_seeds(recipe))
    return Trainer(model, MemberData.from_split(data, model.members), recipe, callbacks=callbacks)


def _state(trainer: Trainer) -> dict:
    """Everything a member owns, as plain values: tensors, optimizer state and hyper-parameters, loop state."""
    out = {f"model.{k}": v.detach().clone() for k, v in trainer.model.member_tensors().items()}
    out.update({f"best.{k}": v.clone() for k, v in trainer.best_state.items()})
    for i, state in enumerate(trainer.optimizer.state):
        out.update({f"optimizer.{i}.{k}": v.clone() for k, v in state.items()})
    for i, hyper in enumerate(trainer.optimizer.hyper):
        out.update({f"optimizer.hyper.{i}.{k}": v.clone() for k, v in hyper.items()})
    out.update({f"hyper.{k}": v.clone() for k, v in trainer.hyper.items()})
    loop = trainer.state
    out["loop"] = (*(list(v) for v in (loop.best_value, loop.best_epoch, loop.wait, loop.stopped, loop.diverged_at)),
                   loop.step)
    out["seeds"] = list(trainer.model.random.seeds)
    out["steps"] = trainer.optimizer.steps
    return out


def _assert_same(got: dict, want: dict, *, exact: bool = True) -> None:
    """Equal keys and values: tensors bit for bit (`exact`), or to the population engine's rounding (members of
    populations of different sizes differ in the last bits of a float32 GEMM or BatchNorm)."""
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, torch.Tensor) and not exact and value.is_floating_point():
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
        elif isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), key
        elif key == "loop" and not exact:  # best values are losses: rounding again
            assert got[key][1:] == value[1:], key
            assert got[key][0] == pytest.approx(value[0], rel=1e-5), key
        else:
            assert got[key] == value, key


def _select(state: dict, keep: list[int]) -> dict:
    """A population's state restricted to members `keep` (every tensor here carries the member axis first)."""
    index = torch.tensor(keep)
    out = {k: v[index] if isinstance(v, torch.Tensor) and v.dim() else v for k, v in state.items()}
    out["loop"] = tuple([values[m] for m in keep] for values in state["loop"][:-1]) + (state["loop"][-1],)
    out["seeds"] = [state["seeds"][m] for m in keep]
    return out


class _Compact(Controller):
    """At the end of epoch 2: record the state, keep `members`, record the state again."""

    def __init__(self, members: list[int]) -> None:
        self.members, self.before, self.after = members, None, None

    def epoch_end(self, trainer, record) -> None:
        if record.epoch == 2:
            self.before = _state(trainer)
            trainer.keep_members(self.members)
            self.after = _state(trainer)


class _Capture(Listener):
    def __init__(self) -> None:
        self.at_2 = None

    def epoch_end(self, trainer, record) -> None:
        if record.epoch == 2:
            self.at_2 = _state(trainer)


@pytest.mark.parametrize("keep", [[1, 3], [0], [0, 2, 3]])
def test_compacting_a_population_gives_exactly_a_fresh_population_of_the_kept_members(keep):
    recipe = load_recipe(POPULATION)
    compact = _Compact(keep)
    whole = _trainer(recipe, [compact])
    whole.run()
    capture = _Capture()
    fresh = _trainer(select_members(recipe, keep), [capture])
    fresh.run()
    _assert_same(compact.after, _select(compact.before, keep))  # compaction itself is exact
    _assert_same(compact.after, capture.at_2, exact=False)  # = a fresh population of the kept members
    _assert_same(_state(whole), _state(fresh), exact=False)  # and one epoch later, trained on from there
    last = [r for r in whole.history if r["epoch"] == 3]
    alone = [r for r in fresh.history if r["epoch"] == 3]
    for a, b in zip(last, alone):
        assert a.keys() == b.keys()
        for key in a:
            if key != "member":
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert [r["member"] for r in whole.history if r["epoch"] == 3] == keep  # rows keep the original member numbers


def test_a_user_module_returns_and_saves_its_best_epochs_weights(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))  # first dimension 128, not 1
    recipe = {"data": {"name": "digits"}, "train": {"optimizer": "adam", "lr": 0.03, "epochs": 12, "batch_size": 32},
              "track": {"tensorboard": False, "plots": False, "checkpoint": True}}
    result = fit(recipe, module=module, out=tmp_path / "run")
    best = result.summary["best_epoch"]
    val = {r["epoch"]: r["val_loss"] for r in result.history}
    assert best != max(val), "the case needs a best epoch before the last one"
    assert abs(result.summary["val"]["loss"] - val[best]) < 1e-6  # the returned weights are the best epoch's
    assert abs(result.summary["val"]["loss"] - val[max(val)]) > 1e-4
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    for name, value in result.model.state_dict().items():
        assert torch.equal(saved[name], value), name


class _Order(Listener):
    def __init__(self, log: list) -> None:
        self.log = log

    def train_begin(self, trainer) -> None:
        self.log.append("train_begin")

    def epoch_begin(self, trainer, epoch) -> None:
        self.log.append(f"epoch_begin {epoch}")

    def step_end(self, trainer, step) -> None:
        self.log.append(f"step {step}")

    def epoch_end(self, trainer, record) -> None:
        self.log.append(f"epoch_end {record.epoch} improved={record.improved}")

    def train_end(self, trainer) -> None:
        self.log.append("train_end")


class _Stopper(Controller):
    def __init__(self, log: list) -> None:
        self.log = log

    def epoch_end(self, trainer, record) -> None:
        self.log.append(f"controller {record.epoch}")
        if record.epoch == 2:
            trainer.state.stopped[0] = True


def test_events_arrive_in_order_and_listeners_hear_them_before_controllers():
    log: list[str] = []
    recipe = load_recipe({"data": {"name": "moons", "n_samples": 100}, "model": {"widths": [8]},
                          "train": {"batch_size": 32, "epochs": 5}, "track": QUIET})
    trainer = _trainer(recipe, [_Stopper(log), _Order(log)])  # the controller given first still hears second
    state = trainer.run()
    steps = 2  # 49 training rows in batches of 32
    expected = ["train_begin"]
    for epoch in range(2):
        expected += [f"epoch_begin {epoch}", *[f"step {epoch * steps + s + 1}" for s in range(steps)],
                     f"epoch_end {epoch + 1} improved={[trainer.history[epoch]['val_loss'] < min([float('inf')] + [r['val_loss'] for r in trainer.history[:epoch]])]}",
                     f"controller {epoch + 1}"]
    assert log == expected + ["train_end"]
    assert state.epoch == 2  # the controller stopped the run


def test_per_member_keys_have_one_source_of_truth():
    declared = set()

    def walk(cls, where):
        hints = __import__("typing").get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{where}.{f.name}")
            elif hints[f.name] is PerMember:
                declared.add(f"{where}.{f.name}")

    for section in ("data", "model", "penalty", "constraints", "train", "augment", "track"):
        walk(__import__("typing").get_type_hints(Recipe)[section], section)
    paths = {f.path for f in member_fields()}
    assert paths == declared
    assert {".".join(p) for p in HYPER_FIELDS.values()} == declared
    assert set(NUMERIC_KEYS) == declared | {"model.dropout", "seed"}
    assert set(INTEGER_KEYS) == {"seed", "model.input_features"}
    assert HYPER_FIELDS["clip"] == ("train", "clip", "max")
