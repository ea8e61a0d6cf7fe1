"""Pruning after training, iterated: the lottery ticket's iterative magnitude pruning (H1).

Round 0 trains the dense network (or is a finished run). Each round r = 1..R then

1. prunes `rate` of each member's surviving weights, ranked by the magnitude of the weights that member
   ended round r-1 with: in each layer (`prune.scope: layer`) or over all of the member's pruned layers
   together (`global`). After r rounds a share s_r = 1 - (1 - rate)^r is gone: k = floor(s_r n) of each
   layer's n weights (or of all n together), so the masks only ever lose ones. `prune.method: random`
   ranks by a fixed random score per weight instead (the random-pruning control);
2. starts the survivors from (`rewind`)
   - `init`: their initial values theta_0, the winning ticket (Frankle & Carbin 2019); with `epoch_rewind`
     K, their values after K epochs of round 0 instead (rewinding, Frankle et al. 2020);
   - `reinit`: a fresh random initialization, drawn from another seed per member and round (the control:
     the same kind of sparse structure with other initial weights);
   - `keep`: their trained values, i.e. prune and fine-tune (Han et al. 2015);
3. trains the recipe again, from a fresh optimizer and the full schedule, with the masks fixed: pruned
   weights are exactly 0 and get no gradient (`pruning.py`). Everything but the starting weights (data
   order, dropout masks, augmentation) follows each member's own seed as in round 0.

**Arms are members.** Each rewind mode asked for is an *arm*, and `dense=True` adds a dense control (rate 0,
rewound to theta_0 even with `epoch_rewind`, so it retrains round 0's network every round). A round trains every arm x every member
of the recipe as one population: member j * A + a is the recipe's member j in arm a (`expand_members`), and
it equals the same arm run alone, because its masks, starting weights and batches depend on its own seed
only (tested). Round 0, the same for every arm, trains the recipe's own members once.

References: J. Frankle, M. Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural
Networks", ICLR 2019 (algorithm in section 2, random reinitialization in section 3); J. Frankle,
G. K. Dziugaite, D. Roy, M. Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020
(rewinding to iteration k); S. Han et al., "Learning both Weights and Connections for Efficient Neural
Networks", NIPS 2015 (prune, then fine-tune the kept weights).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import Recipe, RecipeError, to_dict
from ..nn.random import mix_seed
from ..registry import lookup
from ..train.events import Listener
from .prune import _keep_by_rank, check_sparsity, pruned_count, random_masks

REWIND_MODES: dict[str, str] = {
    "init": "rewind the survivors to their initial values (the lottery ticket; --epoch-rewind K: to epoch K's)",
    "reinit": "re-initialize the survivors randomly (the control)",
    "keep": "keep the trained survivors and fine-tune them",
}
"""How a round starts its surviving weights; the keys are what `rewind` (and `tamenet prune --rewind`) accept."""

DENSE_ARM = "dense"
REINIT_STREAM = 3000  # the per-member random stream of `reinit` seeds (random masks use 2000, input noise 1000)


@dataclass(frozen=True)
class Arm:
    """One arm of the experiment: its name, how it starts each round, and the share it prunes per round."""

    name: str
    rewind: str
    rate: float


def round_sparsity(rate: float, round_: int) -> float:
    """s_r = 1 - (1 - rate)^r, rounded to 12 digits so that 1 - 0.8 counts as 0.2 when floor(s n) is taken."""
    return round(1.0 - (1.0 - rate) ** round_, 12)


def next_masks(weights: list[torch.Tensor], masks: list[torch.Tensor], sparsity: torch.Tensor, *,
               scope: str = "layer", method: str = "magnitude", seeds: list[int] | None = None) -> list[torch.Tensor]:
    """The next round's masks (bool, like each weight [M, ...]): k = floor(s n) pruned per member, old ones kept pruned.

    weights: each member's weights at the end of the last round; masks: their masks then (1 = kept);
    sparsity [M]: this round's share s_r per member. Magnitude ranks the survivors by |w| behind every weight
    already pruned (scored -1, so an exactly zero survivor still ranks above them); random ranks by each
    member's fixed random scores (`random_masks`), which nest from round to round by themselves.
    """
    s = check_sparsity(sparsity)
    members = weights[0].shape[0]
    if s.shape != (members,):
        raise ValueError(f"next_masks: one sparsity per member ({members}), got shape {tuple(s.shape)}")
    old = [m.bool() for m in masks]
    if method == "random":
        if seeds is None:
            raise ValueError("next_masks: random pruning needs each member's seed")
        return [keep & o for keep, o in zip(random_masks(weights, s, seeds), old)]
    if method != "magnitude":
        raise ValueError(f"unknown pruning method {method!r}; expected 'magnitude' or 'random'")
    scores = [torch.where(o, w.detach().abs().double(), torch.tensor(-1.0, dtype=torch.float64)).reshape(members, -1)
              for w, o in zip(weights, old)]
    if scope == "layer":
        keeps = [_keep_by_rank(f, pruned_count(s, f.shape[1])) for f in scores]
    elif scope == "global":
        together = _keep_by_rank(torch.cat(scores, dim=1), pruned_count(s, sum(f.shape[1] for f in scores)))
        keeps = list(torch.split(together, [f.shape[1] for f in scores], dim=1))
    else:
        raise ValueError(f"unknown pruning scope {scope!r}; expected 'layer' or 'global'")
    return [keep.reshape(w.shape) & o for keep, w, o in zip(keeps, weights, old)]


def arms_of(rewind: str | list[str], rate: float, dense: bool) -> list[Arm]:
    """The experiment's arms: one per rewind mode (each pruning `rate` per round), then the dense control."""
    modes = [rewind] if isinstance(rewind, str) else list(rewind)
    if not modes:
        raise ValueError("rewind: expected at least one of " + ", ".join(REWIND_MODES) + ", got none")
    for mode in modes:
        lookup(REWIND_MODES, mode, "rewind mode")
    if len(set(modes)) != len(modes):
        raise ValueError(f"rewind: each mode once, got {modes}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise ValueError(f"rate: expected the share of surviving weights pruned per round, in (0, 1), got {rate!r}")
    return [Arm(m, m, float(rate)) for m in modes] + ([Arm(DENSE_ARM, "init", 0.0)] if dense else [])


# ----------------------------------------------------------------- one round's recipe and starting state
def round_recipe(base: Recipe, arms: list[Arm], round_: int) -> Recipe:
    """The recipe of round r: the base's members repeated per arm (member j * A + a), each at its arm's s_r."""
    from ..recipes import expand_members, load_recipe

    expanded = expand_members(base, len(arms))
    raw = to_dict(expanded)
    members = len(_seeds(expanded))
    sparsity = [round_sparsity(arms[m % len(arms)].rate, round_) for m in range(members)]
    raw["prune"] = {**raw["prune"], "sparsity": sparsity if members > 1 else sparsity[0], "start_epoch": 0,
                    "end_epoch": None}
    return load_recipe(raw)


def _seeds(recipe: Recipe) -> list[int]:
    from ..train.hyper import member_seeds

    return member_seeds(recipe)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: t.detach().cpu().clone() for name, t in model.member_tensors().items()}


def _masks_of(model, roles) -> dict[str, torch.Tensor]:
    """Each pruned weight's mask [M, ...] (all ones for a dense model)."""
    if hasattr(model, "pruning"):
        return {r.name: model.pruning.mask(r.name).detach().cpu().clone() for r in roles}
    return {r.name: torch.ones(r.per_member(r.param).shape) for r in roles}


@dataclass
class RoundStart:
    """`fit`'s setup for round r >= 1: each member's masks and starting weights, loaded before training.

    `previous`/`previous_masks`: the last round's final member tensors and masks; `source[m]`: member m's row
    in them; `rewound`: theta_K per recipe member (epoch rewinding), None for theta_0 (the fresh model itself).
    """

    recipe: Recipe
    arms: list[Arm]
    round_: int
    previous: dict[str, torch.Tensor]
    previous_masks: dict[str, torch.Tensor]
    source: list[int]
    rewound: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(self, model, data) -> None:
        from ..models import build_model
        from .pruning import pruned_weights

        arms, A = self.arms, len(self.arms)
        members = model.members
        index = torch.tensor(self.source)
        roles = pruned_weights(model, self.recipe.prune)
        seeds = model.random.seeds
        sparsity = torch.tensor([round_sparsity(arms[m % A].rate, self.round_) for m in range(members)],
                                dtype=torch.float64)
        weights = [r.per_member(self.previous[r.name])[index] for r in roles]
        masks = next_masks(weights, [self.previous_masks[r.name][index] for r in roles], sparsity,
                           scope=self.recipe.prune.scope, method=self.recipe.prune.method, seeds=seeds)
        modes = [arms[m % A].rewind for m in range(members)]
        dense = [arms[m % A].name == DENSE_ARM for m in range(members)]
        fresh = None
        if "reinit" in modes:
            other = [mix_seed(s, REINIT_STREAM, self.round_) for s in seeds]
            fresh = dict(build_model(self.recipe.model, n_in=data.n_features, n_out=data.n_outputs, seeds=other,
                                     input_shape=data.image_shape, quantize=self.recipe.quantize).named_parameters())
        for name, tensor in model.member_tensors().items():
            if name.startswith("pruning."):
                continue
            start = tensor.detach().cpu().clone()  # theta_0: the freshly built member (its seed, its layers)
            for m, mode in enumerate(modes):
                if mode == "keep":
                    start[m] = self.previous[name][self.source[m]]
                elif mode == "reinit" and name in fresh:
                    start[m] = fresh[name][m].detach()
                elif mode == "init" and self.rewound is not None and not dense[m]:  # the dense arm: theta_0
                    start[m] = self.rewound[name][m // A]
            tensor.copy_(start.to(tensor.device))
        for role, mask in zip(roles, masks):
            model.pruning.mask(role.name).copy_(mask.to(model.pruning.mask(role.name).dtype))
            role.per_member(role.param.data).mul_(mask.to(role.param.device, role.param.dtype))
        model.pruning.fixed = True  # these masks stand for the whole round


class EpochSnapshot(Listener):
    """A listener of round 0 keeping every member tensor after `epoch` epochs (theta_K for rewinding)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.state: dict[str, torch.Tensor] | None = None

    def epoch_end(self, trainer, record) -> None:
        if record.epoch == self.epoch:
            self.state = _snapshot(trainer.model)


# ----------------------------------------------------------------- the experiment
@dataclass
class LotteryResult:
    """Every round's run directory and figures: `rows` as in rounds.csv, one per round x arm x recipe member."""

    arms: list[Arm]
    rows: list[dict]
    run_dirs: list[Path | None]
    out: Path | None
    models: list = field(default_factory=list)  # each round's final population (best weights), with keep_models


def _entries(summary: dict) -> list[dict]:
    return summary.get("per_member", [summary])


def round_rows(round_: int, arms: list[Arm], summary: dict, sparsity: list[float], seeds: list[int],
               run: str | None, *, shared: bool) -> list[dict]:
    """rounds.csv's rows of one round: per arm and recipe member (`shared`: round 0, one member for all arms)."""
    metric, A = summary["metric"], len(arms)
    entries = _entries(summary)
    members = len(seeds) if shared else len(entries) // A
    rows = []
    for a, arm in enumerate(arms):
        for j in range(members):
            m = j if shared else j * A + a
            e = entries[m]
            row: dict[str, Any] = {"round": round_, "arm": arm.name, "seed": seeds[j], "member": m, "rate": arm.rate,
                                   "sparsity": round(sparsity[m], 6)}
            for split in ("train", "val", "test"):
                for key in ("loss", metric):
                    row[f"{split}_{key}"] = e[split][key] if split in e else ""
            row["best_epoch"] = e.get("best_epoch", "")
            row["run"] = run or ""
            rows.append(row)
    return rows


def rows_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def round_line(rows: list[dict], rounds: int) -> str:
    """One line per round: the pruned arms' sparsity and each arm's mean (+- std over members) test metric."""
    r = rows[0]["round"]
    metric = next(k for k in rows[0] if k.startswith("train_") and k != "train_loss")[len("train_"):]
    split = "test" if rows[0][f"test_{metric}"] != "" else "val"
    pruned = [row["sparsity"] for row in rows if row["rate"] > 0]
    parts = []
    for arm in dict.fromkeys(row["arm"] for row in rows):
        values = [row[f"{split}_{metric}"] for row in rows if row["arm"] == arm]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        parts.append(f"{arm} {mean:.4f}" + (f"±{std:.4f}" if std is not None else ""))
    where = f"  ({rows[0]['run']})" if rows[0]["run"] else ""
    return (f"round {r}/{rounds}  sparsity {sum(pruned) / max(len(pruned), 1):.4f}  {split} {metric}: "
            + ", ".join(parts) + where)


def _check_base(recipe: Recipe, epoch_rewind: int | None, arms: list[Arm], trained: bool) -> None:
    values = recipe.prune.sparsity if isinstance(recipe.prune.sparsity, list) else [recipe.prune.sparsity]
    if any(v != 0 for v in values):
        raise RecipeError(f"prune.sparsity: iterative pruning sets each round's sparsity itself; expected 0 in the "
                          f"recipe (prune.scope, method and layers are used), got {recipe.prune.sparsity!r}")
    if epoch_rewind is None:
        return
    if isinstance(epoch_rewind, bool) or not isinstance(epoch_rewind, int) or not 0 <= epoch_rewind < recipe.train.epochs:
        raise ValueError(f"epoch_rewind: expected a whole number of epochs in [0, {recipe.train.epochs - 1}] "
                         f"(train.epochs is {recipe.train.epochs}), got {epoch_rewind!r}")
    if not any(a.rewind == "init" for a in arms if a.name != DENSE_ARM):
        raise ValueError("epoch_rewind: rewinding to an epoch applies to the 'init' arm; expected rewind to include "
                         f"'init', got {[a.name for a in arms]}")
    if trained and epoch_rewind:
        raise ValueError("epoch_rewind: the weights after K epochs exist only when round 0 trains here; expected a "
                         "recipe rather than a finished run directory")


def _source(recipe) -> Path | None:
    """The finished run directory a `recipe` argument names, or None for a recipe."""
    if isinstance(recipe, (str, Path)) and Path(recipe).is_dir():
        folder = Path(recipe)
        if not (folder / "model.pt").is_file():
            raise FileNotFoundError(f"{folder}: expected a recipe file or a finished run directory (with model.pt), "
                                    "got a folder without model.pt")
        return folder
    return None


def iterative_pruning(recipe: Recipe | dict | str | Path | None, *, rounds: int, rate: float = 0.2,
                      rewind: str | list[str] = "init", epoch_rewind: int | None = None, dense: bool = False,
                      out: str | Path | None = None, overrides: list[str] | None = None,
                      callbacks: list | None = None, on_round: Callable[[list[dict]], None] | None = None,
                      keep_models: bool = True) -> LotteryResult:
    """Train, prune `rate` of the surviving weights, restart the survivors per `rewind`, `rounds` times.

    `recipe`: a recipe (object, dict, YAML path, None for the default job) whose round 0 trains here, or a
    finished run directory whose model is round 0 (its recipe then drives the rounds; `overrides` apply to
    rounds >= 1). `rewind`: one mode of `REWIND_MODES` or several (one arm each, as members of one population);
    `dense`: add a dense control arm; `epoch_rewind` K: the `init` arm rewinds to epoch K of round 0.
    `out`: a folder that gets round-00 (unless round 0 is a given run), round-01, ..., rounds.csv and
    lottery.json; None trains in memory. `on_round(rows)` hears each round's rows (the CLI prints a line);
    `keep_models=False` keeps only the last round's population in `models` (the others are in their run directories).
    """
    from ..api import fit
    from ..recipes import load_recipe
    from ..trained import evaluate_run, load_run
    from ..track.atomic import atomic_write_text
    from .pruning import pruned_weights, pruning_summary

    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected a whole number of pruning rounds >= 1, got {rounds!r}")
    arms = arms_of(rewind, rate, dense)
    source = _source(recipe)
    if source is not None:
        trained = load_run(source)
        base = load_recipe(trained.recipe, overrides)
    else:
        base = load_recipe(recipe, overrides)
    _check_base(base, epoch_rewind, arms, source is not None)
    out = Path(out) if out is not None else None
    if out is not None:
        if (out / "rounds.csv").exists() or (out / "round-01").exists():
            raise FileExistsError(f"out {out}: holds an iterative-pruning run already; expected a new folder")
        out.mkdir(parents=True, exist_ok=True)
        settings = {"source": str(source) if source else None, "rounds": rounds, "rate": rate,
                    "arms": [a.__dict__ for a in arms], "epoch_rewind": epoch_rewind, "scope": base.prune.scope,
                    "method": base.prune.method, "layout": "member j * len(arms) + a of rounds >= 1 is the recipe's "
                    "member j in arm a; round 0 trains the recipe's own members"}
        atomic_write_text(out / "lottery.json", json.dumps(settings, indent=2) + "\n")
    seeds = _seeds(base)
    rows: list[dict] = []
    run_dirs: list[Path | None] = []
    models = []

    def finish_round(r: int, summary: dict, model, run_dir: Path | None, sparsity: list[float], shared: bool) -> None:
        label = (str(run_dir) if r == 0 and source is not None else run_dir.name) if run_dir is not None else None
        new = round_rows(r, arms, summary, sparsity, seeds, label, shared=shared)
        rows.extend(new)
        run_dirs.append(run_dir)
        if not keep_models:
            models.clear()
        models.append(model)
        if out is not None:
            atomic_write_text(out / "rounds.csv", rows_csv(rows))
        if on_round is not None:
            on_round(new)

    snapshot = EpochSnapshot(epoch_rewind) if epoch_rewind else None
    if source is not None:  # round 0 is the given run: its figures re-evaluated (the data fingerprint checked)
        scores = evaluate_run(source)
        metric = scores["metric"]
        entries = [{s: {"loss": scores[s]["loss"][m], metric: scores[s][metric][m]} for s in ("train", "val", "test")
                    if s in scores} for m in range(scores["members"])]
        summary = {"metric": metric, "per_member": entries}
        model = trained.model
        finish_round(0, summary, model, source, [0.0] * len(seeds), True)
    else:
        listeners = [*(callbacks or []), *([snapshot] if snapshot else [])]
        result = fit(base, out=out / "round-00" if out is not None else None, callbacks=listeners, keep_last=False)
        model = result.model
        finish_round(0, result.summary, model, result.run_dir, [0.0] * len(seeds), True)
        if snapshot is not None and snapshot.state is None:
            raise ValueError(f"epoch_rewind: round 0 stopped after {result.summary['epochs_run']} epochs, before "
                             f"epoch {epoch_rewind}; expected a smaller K")
    A = len(arms)
    for r in range(1, rounds + 1):
        recipe_r = round_recipe(base, arms, r)
        members = len(_seeds(recipe_r))
        roles = pruned_weights(model, recipe_r.prune)
        start = RoundStart(recipe_r, arms, r, _snapshot(model), _masks_of(model, roles),
                           [m // A for m in range(members)] if r == 1 else list(range(members)),
                           snapshot.state if snapshot is not None else None)
        result = fit(recipe_r, out=out / f"round-{r:02d}" if out is not None else None, setup=start,
                     callbacks=callbacks, keep_last=False)
        model = result.model
        sparsity = [row["sparsity"] for row in pruning_summary(model)]
        finish_round(r, result.summary, model, result.run_dir, sparsity, False)
    return LotteryResult(arms, rows, run_dirs, out, models)
