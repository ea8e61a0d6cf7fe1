"""Augmentation studies (E1, E5): throughput, the effect on small training sets, and a search over a strength.

* ``throughput``: images per second of one batched call for a whole population (M members x B images, each
  member its own strengths and stream) against a Python loop over the same images, one `augment_batch` call
  per image (the same transforms and code), on 1x8x8 (digits) and 3x32x32 inputs.
* ``effect``: `digits` with 10 and 30 training images per class, a small CNN, geometric transforms + random
  erasing (a light and a strong setting) against none; 3 seeds x {none, light, strong} as ONE population of 9
  members; early stopping on 300 validation rows, scored on the remaining ~1,200 test rows; mean and spread
  (min-max) over the seeds.
* ``search``: ``tamenet search --grid augment.image.rotate=0,10,20,30 --folds 5`` on a 300-image digits
  subset (5 folds x 4 strengths as one population); prints the cross-validated accuracy per strength and
  writes the regularization path plot (strength on its axis) into the run directory.

    .venv/bin/python bench/bench_augment.py                   # all three, 1 thread
    .venv/bin/python bench/bench_augment.py --only throughput --device cuda

Raw figures go to ``bench/results/augment.json``. The machine may be shared with other jobs: ratios are
measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine_info  # noqa: E402

from tamenet.augment.image import Draws, augment_batch  # noqa: E402
from tamenet.nn import MemberRandom  # noqa: E402

GREY_OPS = {"hflip": 0.5, "rotate": 15.0, "zoom": 0.1, "shift": 0.1, "brightness": 0.2, "contrast": 0.2,
            "noise": 0.05, "erase": 0.25}
COLOUR_OPS = {**GREY_OPS, "hue": 0.05, "saturation": 0.3}
QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}
LIGHT = {"rotate": 10.0, "shift": 0.1, "erase": 0.15, "p": 0.5}
STRONG = {"rotate": 15.0, "shift": 0.125, "zoom": 0.1, "elastic": 0.5, "erase": 0.2, "p": 1.0}


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (imports, kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(device: str, repeats: int) -> list[dict]:
    rows = []
    for shape, ops, members, batch, loop_images in (((1, 8, 8), GREY_OPS, 8, 128, 256),
                                                    ((3, 32, 32), COLOUR_OPS, 4, 64, 64)):
        n = members * batch
        x = torch.rand(n, *shape, device=device)
        random = MemberRandom(list(range(members)))
        strengths = {k: torch.full((n,), v, device=device) * torch.linspace(0.5, 1.0, members, device=device)
                     .repeat_interleave(batch) for k, v in ops.items()}
        p = torch.ones(n, device=device)

        def batched():
            augment_batch(x, strengths, p, Draws(random, batch, x.device), list(ops))

        one = MemberRandom([0])

        def loop():  # the same transforms, one image per call
            for i in range(loop_images):
                augment_batch(x[i:i + 1], {k: v[i:i + 1] for k, v in strengths.items()}, p[i:i + 1],
                              Draws(one, 1, x.device), list(ops))

        t_batch, t_loop = _time(batched, repeats), _time(loop, max(1, repeats // 3))
        rows.append({"shape": list(shape), "ops": list(ops), "members": members, "batch_per_member": batch,
                     "batched_images_per_s": n / t_batch, "loop_images_per_s": loop_images / t_loop,
                     "speedup": (n / t_batch) / (loop_images / t_loop)})
    return rows


def _per_class_subset(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)])


def effect(device: str, epochs: int) -> list[dict]:
    from sklearn.datasets import load_digits

    from tamenet.api import fit

    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8).astype(np.float32)
    rows = []
    for per_class in (10, 30):
        rng = np.random.default_rng(per_class)
        train = _per_class_subset(y, per_class, rng)
        rest = rng.permutation(np.setdiff1d(np.arange(len(y)), train))
        val, test = rest[:300], rest[300:]
        seeds = [0, 1, 2]
        variants = {"none": {}, "light geometric + erasing": LIGHT, "strong geometric + erasing": STRONG}
        keys = sorted({k for v in variants.values() for k in v})
        recipe = {
            "data": {"standardize": False},  # raw grey values 0..16: erasing fills 0, the background
            "model": {"kind": "cnn", "channels": [16, 32], "head_widths": [64], "dropout": 0.0},
            "augment": {"image": {k: [v.get(k, 0.0) for v in variants.values() for _ in seeds] for k in keys}},
            "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": 32, "epochs": epochs, "device": device,
                      "early_stopping": {"monitor": "val_loss", "patience": 40}},
            "track": QUIET, "seed": seeds * len(variants),
        }
        start = time.perf_counter()
        result = fit(recipe, X=X[train], y=y[train], X_val=X[val], y_val=y[val], X_test=X[test], y_test=y[test])
        wall = time.perf_counter() - start
        tests = [m["test"]["accuracy"] for m in result.summary["per_member"]]
        epochs_best = [m["best_epoch"] for m in result.summary["per_member"]]
        for i, label in enumerate(variants):
            part = slice(3 * i, 3 * i + 3)
            acc = tests[part]
            rows.append({"train_per_class": per_class, "train_images": len(train), "augmentation": label,
                         "strengths": variants[label],
                         "test_accuracy_mean": float(np.mean(acc)), "min": float(np.min(acc)),
                         "max": float(np.max(acc)), "per_seed": acc, "best_epochs": epochs_best[part],
                         "wall_s_population": wall})
    return rows


def search(device: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "recipe.yaml"
        data = Path(tmp) / "digits300.npz"
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        rng = np.random.default_rng(0)
        keep = rng.permutation(len(y))[:375]  # 300 pool rows after the 20 % test split
        np.savez(data, X=X[keep].astype(np.float32), y=y[keep])
        recipe.write_text(
            f"data: {{name: npz, path: {data}, standardize: false}}\n"
            "model: {kind: cnn, channels: [16, 32], input_shape: [1, 8, 8]}\n"
            f"augment: {{image: {{shift: 0.1, erase: 0.2}}}}\n"
            f"train: {{lr: 0.003, batch_size: 32, epochs: {epochs}, device: {device}, "
            "early_stopping: {monitor: val_loss, patience: 15}}\n"
        )
        out = HERE / "results" / "augment_search"
        cmd = [sys.executable, "-m", "tamenet", "search", str(recipe), "--grid", "augment.image.rotate=0,10,20,30",
               "--folds", "5", "--no-refit", "--out", str(out)]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"search failed: {done.stderr.strip()}")
        result = json.loads((out / "search.json").read_text())
        return {"command": " ".join(cmd[1:]), "wall_s": wall, "path_plot": str(out / "path.png"),
                "path_plot_exists": (out / "path.png").exists(), "stdout": done.stdout,
                "candidates": [{"rotate": r["augment.image.rotate"], "cv_accuracy_mean": r["cv_accuracy_mean"],
                                "cv_accuracy_std": r["cv_accuracy_std"]} for r in result["candidates"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["throughput", "effect", "search"], action="append")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=300, help="effect study: most epochs (early stopping)")
    parser.add_argument("--search-epochs", type=int, default=60)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.only or ["throughput", "effect", "search"]
    report: dict = {"machine": machine_info(("kornia",)), "note": "the machine may be shared with other jobs"}
    print("machine shared with other jobs; ratios measured side by side in one run")
    if "throughput" in parts:
        report["throughput"] = throughput(args.device, args.repeats)
        print("\nthroughput (images/s)\nshape      members x batch  batched   per-image loop  speedup")
        for r in report["throughput"]:
            print(f"{'x'.join(map(str, r['shape'])):9}  {r['members']:>3} x {r['batch_per_member']:<9}"
                  f"{r['batched_images_per_s']:>9.0f}   {r['loop_images_per_s']:>10.0f}  {r['speedup']:>8.1f}x")
    if "effect" in parts:
        report["effect"] = effect(args.device, args.epochs)
        print(f"\neffect on digits (test accuracy over 3 seeds; none/light/strong x 3 seeds = one population of 9)\n"
              f"light: {LIGHT}\nstrong: {STRONG}")
        print("per class  augmentation                 mean    min-max         best epochs")
        for r in report["effect"]:
            print(f"{r['train_per_class']:>9}  {r['augmentation']:<27} {r['test_accuracy_mean']:.3f}  "
                  f"{r['min']:.3f}-{r['max']:.3f}   {r['best_epochs']}")
    if "search" in parts:
        report["search"] = search(args.device, args.search_epochs)
        print(f"\nsearch: {report['search']['command']}  ({report['search']['wall_s']:.0f} s)")
        for c in report["search"]["candidates"]:
            print(f"  rotate {c['rotate']:>4g}: cv accuracy {c['cv_accuracy_mean']:.3f} +- {c['cv_accuracy_std']:.3f}")
        print(f"  path plot: {report['search']['path_plot']} ({'written' if report['search']['path_plot_exists'] else 'MISSING'})")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "augment.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
