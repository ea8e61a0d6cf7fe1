"""Calibration and uncertainty of a probabilistic classifier (an ensemble's or Monte-Carlo dropout's mean).

Reliability diagram and expected calibration error (Guo et al., "On calibration of modern neural
networks", ICML 2017): the rows are put in B equal-width bins of confidence c = max_k p_k;

    ECE = sum_b (n_b / N) * | acc(b) - conf(b) |

with acc(b) the share of correct answers and conf(b) the mean confidence in bin b. Uncertainty against
error: the predictive entropy H[p] = -sum_k p_k log p_k of the wrong answers against the right ones.
"""

from __future__ import annotations

import numpy as np

BINS = 15


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict[str, np.ndarray | float]:
    """Per-bin counts, accuracy and mean confidence, and the ECE (formula in the module docstring)."""
    probs, y = np.asarray(probs, dtype=float), np.asarray(y)
    if probs.ndim != 2 or len(probs) != len(y):
        raise ValueError(f"reliability: expected probs [N, K] and labels [N], got {probs.shape} and {y.shape}")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    acc = np.bincount(index, weights=correct, minlength=bins) / np.maximum(count, 1)
    conf = np.bincount(index, weights=confidence, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count / max(len(y), 1) * np.abs(acc - conf)))
    return {"edges": edges, "count": count, "accuracy": acc, "confidence": conf, "ece": ece}


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy per row, in nats."""
    p = np.clip(np.asarray(probs, dtype=float), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def uncertainty_vs_error(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean entropy of the right and of the wrong answers, and the AUROC of entropy as a detector of errors
    (the probability that a random wrong answer is more uncertain than a random right one; 0.5: no signal)."""
    h = entropy(probs)
    wrong = np.asarray(probs).argmax(axis=1) != np.asarray(y)
    right_h, wrong_h = h[~wrong], h[wrong]
    if not len(right_h) or not len(wrong_h):
        return {"right": float(right_h.mean()) if len(right_h) else float("nan"),
                "wrong": float(wrong_h.mean()) if len(wrong_h) else float("nan"), "auroc": float("nan"),
                "errors": int(wrong.sum())}
    from scipy.stats import rankdata  # imported on use: slow

    ranks = rankdata(np.concatenate([right_h, wrong_h]))  # ties share their average rank (Mann-Whitney U)
    auroc = (ranks[len(right_h):].sum() - len(wrong_h) * (len(wrong_h) + 1) / 2) / (len(right_h) * len(wrong_h))
    return {"right": float(right_h.mean()), "wrong": float(wrong_h.mean()), "auroc": float(auroc),
            "errors": int(wrong.sum())}


__all__ = ["BINS", "entropy", "reliability", "uncertainty_vs_error"]
