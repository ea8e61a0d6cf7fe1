"""Successive halving (X2): at each rung the worse candidates leave the population and stop costing compute.

Candidates are ranked by the mean over their folds of the best stopping-set score so far (the loop's
early-stopping monitor, never the scored rows). A search without a stopping set (`stop_share` 0, or
neither early stopping nor restore_best) ranks by the score it selects on, the folds' scored rows at the rung, as scikit-learn's
HalvingGridSearchCV ranks by its cross-validated score. A candidate with a diverged fold ranks last. At each
rung the best ceil(n / eta) stay (Jamieson & Talwalkar, AISTATS 2016; Li et al., "Hyperband", JMLR 2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..train import EpochRecord, Trainer


def halving_rungs(epochs: int, candidates: int, eta: int = 3) -> list[int]:
    """Epochs at which to halve: E / eta^s, ..., E / eta, with s rungs so that about one candidate remains."""
    if eta < 2:
        raise ValueError(f"halving: expected eta >= 2, got {eta}")
    stages, left = 0, candidates
    while left > 1:  # each rung keeps ceil(n / eta) candidates
        left, stages = math.ceil(left / eta), stages + 1
    rungs = sorted({max(1, round(epochs / eta**i)) for i in range(stages, 0, -1)})
    return [r for r in rungs if r < epochs]


@dataclass
class Halving:
    """The callback: drops candidates at the rungs; `on_drop(trainer, indices)` sees them before they go.

    `score(trainer)` gives every current member's rung score (lower is better); without it, the
    members' best stopping-set values rank them.
    """

    rungs: list[int]
    folds: int
    eta: int = 3
    on_drop: Callable[[Trainer, list[int]], None] | None = None
    score: Callable[[Trainer], list[float]] | None = None
    member_epochs: int = 0
    dropped: list[dict] = field(default_factory=list)

    def __call__(self, record: EpochRecord, trainer: Trainer) -> None:
        self.member_epochs += trainer.members
        if record.epoch not in self.rungs:
            return
        state = trainer.state
        by_candidate: dict[int, list[int]] = {}
        for index, member in enumerate(trainer.member_ids):
            by_candidate.setdefault(member // self.folds, []).append(index)
        member_scores = self.score(trainer) if self.score is not None else state.best_value
        scores = {}
        for candidate, indices in by_candidate.items():
            values = [member_scores[i] for i in indices]
            bad = any(state.diverged_at[i] is not None for i in indices) or not all(map(math.isfinite, values))
            scores[candidate] = math.inf if bad else sum(values) / len(values)
        ranked = sorted(by_candidate, key=lambda c: (scores[c], c))
        keep = ranked[: max(1, math.ceil(len(ranked) / self.eta))]
        gone = [c for c in ranked if c not in keep]
        if not gone:
            return
        leaving = [i for c in gone for i in by_candidate[c]]
        if self.on_drop is not None:
            self.on_drop(trainer, leaving)
        self.dropped.append({"epoch": record.epoch, "candidates": sorted(gone), "kept": sorted(keep)})
        trainer.keep_members(sorted(i for c in keep for i in by_candidate[c]))
