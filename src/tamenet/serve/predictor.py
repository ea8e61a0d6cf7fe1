"""Predictions for the server: chunks of rows, and Monte-Carlo dropout that shares no mode with plain requests.

Plain requests use one copy of the population, always in eval mode (read-only under `torch.no_grad`,
so concurrent requests do not interfere). Monte-Carlo dropout switches a model's dropout layers to
sampling and sets its random step, so it runs on a *second* copy, one request at a time (a lock):
a plain request never sees sampling dropout, and an MC request's masks depend only on the members'
seeds and its rows (`tamenet.mc_dropout`), so concurrent answers equal sequential ones.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import numpy as np
import torch

from ..trained import TrainedModel

CHUNK_ROWS = 2048
"""Rows the model sees at once: a large request is predicted chunk by chunk (bounded memory)."""


class Predictor:
    """A trained model's plain and Monte-Carlo predictions as JSON-able answers, computed in chunks."""

    def __init__(self, trained: TrainedModel, *, chunk_rows: int = CHUNK_ROWS) -> None:
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows: expected a positive integer, got {chunk_rows!r}")
        trained.model.eval()
        self.plain = trained
        self.sampler = TrainedModel(copy.deepcopy(trained.model), trained.recipe, trained.preprocessing, trained.path)
        self.lock = threading.Lock()
        self.chunk_rows = chunk_rows
        self.classes = (None if trained.task != "classification" else
                        [c.item() if isinstance(c, np.generic) else c for c in trained.preprocessing["classes"]])

    def __call__(self, rows: np.ndarray, *, mc: int | None = None, member: int | None = None) -> dict[str, Any]:
        """The answer for rows [N, F]: labels and probabilities (classification) or values, plus with `mc`
        the standard deviations over the masks and (classification) the predictive entropy."""
        parts = [self._chunk(rows[i : i + self.chunk_rows], mc, member) for i in range(0, len(rows), self.chunk_rows)]
        merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        answer: dict[str, Any] = {"rows": len(rows)}
        if "label" in merged:
            answer["labels"] = [c.item() if isinstance(c, np.generic) else c for c in merged["label"]]
            answer["classes"] = self.classes
            answer["probabilities"] = merged["probabilities"].astype(np.float64).tolist()
        else:
            answer["values"] = merged["value"].astype(np.float64).tolist()
        if mc is not None:
            answer["mc"] = mc
            answer["std"] = merged["std"].astype(np.float64).tolist()
            if "entropy" in merged:
                answer["entropy"] = merged["entropy"].astype(np.float64).tolist()
        return answer

    def _chunk(self, rows: np.ndarray, mc: int | None, member: int | None) -> dict[str, np.ndarray]:
        with torch.no_grad():
            if mc is None:
                return self.plain.predict(rows, member=member)
            with self.lock:
                return self.sampler.predict_mc(rows, mc, member=member)


__all__ = ["CHUNK_ROWS", "Predictor"]
