"""Pruning in training (H1): masks as member state, exact zeros through the optimizer, the schedule, the contract."""

import math

import pytest
import torch

from tamenet.api import fit
from tamenet.cli import main
from tamenet.compress.pruning import PruneWeights, pruning_summary, schedule_share
from tamenet.config import PruneConfig, Recipe, RecipeError, parse
from tamenet.select.search import split_grid
from tamenet.trained import load_run
from tamenet.train.member_state import compact, snapshot

from test_training import QUIET, _assert_population_equals_separate_runs, _with

BASE = {
    "data": {"name": "moons", "n_samples": 200, "noise": 0.3},
    "model": {"widths": [32, 32], "activation": "relu"},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 4, "weight_decay": 1e-2},
    "track": QUIET,
    "seed": 0,
}


def _weights(model):
    return {r.name: r.per_member(r.param.detach()) for r in model.param_roles() if r.role == "weight"}


def test_pruned_weights_stay_exactly_zero_through_adam_and_weight_decay():
    sparsity = [0.0, 0.5, 0.9]
    result = fit(_with(BASE, **{"prune.sparsity": sparsity, "seed": [0, 0, 0]}))
    for name, w in _weights(result.model).items():
        mask = result.model.pruning.mask(name)
        n = w[0].numel()
        for m, s in enumerate(sparsity):
            assert int((mask[m] == 0).sum()) == math.floor(s * n + 1e-9), (name, m)
            assert torch.all(w[m][mask[m] == 0] == 0), (name, m)  # exactly zero after 4 epochs of Adam + decay
            assert torch.count_nonzero(w[m][mask[m] == 1]) == int(mask[m].sum())  # the kept ones trained
    assert [row["sparsity"] for row in pruning_summary(result.model)] == pytest.approx(sparsity, abs=2e-3)
    first = [r["train_loss"] for r in result.history if r["epoch"] == 1]
    last = [r["train_loss"] for r in result.history if r["epoch"] == 4]
    assert all(b < a for a, b in zip(first, last))  # every member still learns


def test_magnitude_pruning_at_initialization_removes_the_smallest_initial_weights():
    recipe = _with(BASE, **{"prune.sparsity": 0.75, "train.epochs": 1, "train.lr": 1e-12})
    start = fit(_with(BASE, **{"train.epochs": 1, "train.lr": 1e-12}))  # same init, (almost) untrained
    pruned = fit(recipe)
    for name, w0 in _weights(start.model).items():
        mask = pruned.model.pruning.mask(name)[0].bool()
        assert w0[0].abs()[~mask].max() <= w0[0].abs()[mask].min(), name


def test_a_population_of_sparsities_and_a_gradual_schedule_equals_separate_runs():
    sparsity = [0.5, 0.8, 0.95]
    base = _with(BASE, **{"prune.start_epoch": 1, "prune.end_epoch": 3, "prune.scope": "global"})
    _assert_population_equals_separate_runs(
        _with(base, **{"prune.sparsity": sparsity}),
        [_with(base, **{"prune.sparsity": s}) for s in sparsity],
    )


def test_the_gradual_schedule_follows_the_cubic_share_per_epoch():
    seen = []
    recipe = _with(BASE, **{"prune.sparsity": 0.9, "prune.start_epoch": 0, "prune.end_epoch": 3, "train.epochs": 5})
    fit(recipe, callbacks=[lambda record, trainer: seen.append(pruning_summary(trainer.model)[0]["sparsity"])])
    cfg = PruneConfig(sparsity=0.9, start_epoch=0, end_epoch=3)
    expected = [0.9 * (schedule_share(e, cfg) or 0) for e in range(3)] + [0.9, 0.9]
    assert seen == pytest.approx(expected, abs=2e-3)
    assert seen == sorted(seen)  # masks only lose ones
    assert [schedule_share(e, cfg) for e in range(5)] == pytest.approx([0, 1 - (2 / 3) ** 3, 1 - (1 / 3) ** 3, 1, None])


def test_pruning_after_some_epochs_leaves_the_early_epochs_dense():
    seen = []
    recipe = _with(BASE, **{"prune.sparsity": 0.6, "prune.start_epoch": 2})
    fit(recipe, callbacks=[lambda record, trainer: seen.append(pruning_summary(trainer.model)[0]["sparsity"])])
    assert seen[:2] == [0.0, 0.0] and seen[2:] == pytest.approx([0.6, 0.6], abs=2e-3)


def test_random_masks_come_from_each_members_seed():
    result = fit(_with(BASE, **{"prune.sparsity": 0.5, "prune.method": "random", "seed": [3, 3, 4],
                                "train.epochs": 1}))
    masks = [result.model.pruning.mask(n) for n in result.model.pruning.weights]
    assert all(torch.equal(m[0], m[1]) and not torch.equal(m[0], m[2]) for m in masks)


def test_global_scope_gives_layers_different_shares_with_the_target_overall():
    result = fit(_with(BASE, **{"prune.sparsity": 0.8, "prune.scope": "global", "train.epochs": 1}))
    shares = [float((result.model.pruning.mask(n) == 0).float().mean()) for n in result.model.pruning.weights]
    assert len(set(round(s, 3) for s in shares)) > 1
    assert pruning_summary(result.model)[0]["sparsity"] == pytest.approx(0.8, abs=1e-3)


def test_masks_are_member_state_through_snapshot_compaction_and_the_saved_model(tmp_path):
    recipe = _with(BASE, **{"prune.sparsity": [0.3, 0.6, 0.9], "seed": [0, 1, 2], "train.epochs": 2,
                            "track": {**QUIET, "checkpoint": True}})
    result = fit(recipe, out=tmp_path / "run")
    state = snapshot(result.model)
    mask_keys = [k for k in state if k.startswith("pruning.")]
    assert len(mask_keys) == len(result.model.pruning.weights)
    kept = compact(state, torch.tensor([2, 0]), stacked=True)
    for key in mask_keys:
        assert torch.equal(kept[key][0], state[key][2]) and torch.equal(kept[key][1], state[key][0])
    loaded = load_run(tmp_path / "run")
    for key in mask_keys:
        assert torch.equal(loaded.model.state_dict()[key], result.model.state_dict()[key])
    x = torch.randn(5, 2)
    with torch.no_grad():
        result.model.eval()
        assert torch.equal(loaded.model(x), result.model(x))
    plain = loaded.to_torch(2)  # the exported member: its pruned weights are zeros, its masks stay behind
    first = next(p for name, p in plain.named_parameters() if name.endswith("weight") and p.dim() == 2)
    assert float((first == 0).float().mean()) >= 0.89


def test_sparsity_is_a_numeric_grid_key():
    structures, numbers = split_grid(parse(Recipe, BASE), {"prune.sparsity": [0.5, 0.8, 0.9, 0.95]})
    assert structures == [{}] and len(numbers) == 4


@pytest.mark.parametrize("changes, words", [
    ({"prune.sparsity": 1.0}, "prune.sparsity: expected a share in [0, 1)"),
    ({"prune.sparsity": -0.1}, "prune.sparsity: expected a value >= 0.0"),
    ({"prune.sparsity": 0.5, "prune.start_epoch": 3, "prune.end_epoch": 2}, "prune.end_epoch: expected an epoch after"),
    ({"prune.method": "lottery"}, "prune.method"),
    ({"prune.scope": "row"}, "prune.scope"),
])
def test_bad_pruning_recipes_are_refused_by_name(changes, words):
    with pytest.raises(RecipeError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse(Recipe, _with(BASE, **changes))


def test_an_unknown_layer_lists_the_weight_layers():
    with pytest.raises(RecipeError, match=r"prune.layers: unknown weight layer\(s\) \['hidden.7.weight'\]; expected names from"):
        fit(_with(BASE, **{"prune.sparsity": 0.5, "prune.layers": ["hidden.7.weight"]}))


def test_a_bad_sparsity_on_the_command_line_is_one_line(capsys):
    assert main(["train", "--set", "prune.sparsity=1.5", "--set", "data.name=moons"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prune.sparsity" in err[0] and "1.5" in err[0]


def test_prune_weights_piece_does_nothing_without_masks():
    class Bare:
        model = torch.nn.Linear(2, 2)
    assert PruneWeights().begin_epoch(Bare()) is False


def test_resume_carries_the_masks_and_continues_the_schedule_exactly(tmp_path):
    recipe = _with(BASE, **{"prune.sparsity": [0.5, 0.9], "seed": [0, 1], "prune.end_epoch": 3,
                            "track": {**QUIET, "checkpoint": True}})
    straight = fit(recipe, out=tmp_path / "straight")
    fit(_with(recipe, **{"train.epochs": 2}), out=tmp_path / "split")
    resumed = fit(resume=tmp_path / "split", overrides=["train.epochs=4"])
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
