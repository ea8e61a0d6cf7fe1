"""`TameSearchCV` (the grid x folds as one population) against `GridSearchCV(TameClassifier)` on the same grid.

digits, an MLP 64-128-10 (Adam, lr 1e-3, batch 64, `--epochs` 20), 5-fold cross-validation (the same
folds for both: tamenet's k-fold, given to GridSearchCV as a list of splits) over `penalty__l2`, 8
values log-spaced from 1e-6 to 1e1: 40 fits each, in this one process. Also reports how many of
scikit-learn's estimator checks each estimator fails: tamenet's, and skorch's `NeuralNetClassifier`
when skorch is installed (the `bench` extra; without it that column is skipped with a message).

    .venv/bin/python bench/bench_sklearn.py              # defaults: 20 epochs, 1 thread
    .venv/bin/python bench/bench_sklearn.py --quick      # 3 epochs, 4 grid values

Prints a table and writes the raw figures to bench/results/sklearn.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def failed_checks(estimator) -> tuple[int, int, list[str]]:
    """(checks failed, checks run, names failed) of scikit-learn's `check_estimator`."""
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    return len(failed), sum(r["status"] != "skipped" for r in results), failed


def skorch_checks() -> tuple[int, int, list[str]] | str:
    try:
        from skorch import NeuralNetClassifier
    except ImportError:
        return "skorch is not installed (pip install 'tamenet[bench]'): its column is skipped"
    from torch import nn

    class Net(nn.Module):
        def __init__(self, n_in: int = 20, n_out: int = 3) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(n_out))

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.body(x.float())

    return failed_checks(NeuralNetClassifier(Net, max_epochs=3, criterion=nn.CrossEntropyLoss, verbose=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--values", type=int, default=8, help="grid values of penalty__l2 (default 8)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 epochs, 4 grid values")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.values = 3, 4
    torch.set_num_threads(args.threads)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from tamenet.select.splits import kfold
    from tamenet.sklearn import TameClassifier, TameSearchCV

    X, y = load_digits(return_X_y=True)
    estimator = TameClassifier(model__widths=[128], train__epochs=args.epochs, train__optimizer="adam",
                               train__lr=1e-3, train__batch_size=64)
    grid = {"penalty__l2": [float(v) for v in np.logspace(-6, 1, args.values)]}
    folds = kfold(y, k=args.folds, seed=0, stratify=True)
    started = time.perf_counter()
    ours = TameSearchCV(estimator, grid, cv=args.folds).fit(X, y)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = GridSearchCV(estimator, grid, cv=folds).fit(X, y)
    theirs_s = time.perf_counter() - started
    same = np.allclose(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"], atol=1e-9)
    fits = args.values * args.folds
    print(f"digits, MLP 64-128-10, {args.epochs} epochs, {args.folds}-fold CV over {args.values} values of "
          f"penalty__l2 ({fits} fits, refit included), {args.threads} torch thread(s); machine shared with other "
          "jobs, the two contenders timed side by side in this one run")
    print(f"{'contender':<34} {'time s':>8} {'x TameSearchCV':>15} {'best l2':>9} {'cv accuracy':>12}")
    for name, seconds, search in (("TameSearchCV (one population)", ours_s, ours),
                                  ("GridSearchCV(TameClassifier)", theirs_s, theirs)):
        print(f"{name:<34} {seconds:>8.2f} {seconds / ours_s:>15.2f} {search.best_params_['penalty__l2']:>9.2g} "
              f"{search.best_score_:>12.4f}")
    print(f"same per-candidate cv scores: {same}")
    ours_checks = {n: failed_checks(est) for n, est in
                   (("TameClassifier", TameClassifier(train__epochs=3, model__widths=[8], train__lr=0.1)),)}
    skorch = skorch_checks()
    for name, (failed, run, _) in ours_checks.items():
        print(f"scikit-learn estimator checks, {name}: {failed} of {run} failed")
    if isinstance(skorch, str):
        print(f"scikit-learn estimator checks, skorch NeuralNetClassifier: {skorch}")
    else:
        print(f"scikit-learn estimator checks, skorch NeuralNetClassifier: {skorch[0]} of {skorch[1]} failed")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "sklearn.json").write_text(json.dumps({
        "epochs": args.epochs, "folds": args.folds, "values": args.values, "threads": args.threads,
        "tame_search_cv_s": ours_s, "grid_search_cv_s": theirs_s, "same_scores": bool(same),
        "best": [ours.best_params_, theirs.best_params_],
        "checks": {k: {"failed": v[0], "run": v[1], "names": v[2]} for k, v in ours_checks.items()},
        "skorch_checks": skorch if isinstance(skorch, str) else {"failed": skorch[0], "run": skorch[1],
                                                                   "names": skorch[2]}}, indent=2))


if __name__ == "__main__":
    main()
