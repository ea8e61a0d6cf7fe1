"""Quantization study on the `mnist1d` CNN (H2): float against post-training and quantization-aware int grids.

- float: one population of 3 seeds (model.kind cnn, the data set's own input shape [1, 40]);
- PTQ (`tamenet.compress.ptq.quantize_run` on that run): 8-bit and 4-bit weights (asymmetric, per output
  channel), and 8-bit weights + activations (observers calibrated on the training rows);
- QAT: one population of bits 8 and 4 x the same 3 seeds (weights, per output channel), and one of 8-bit
  weights + activations;
- deployment of the float member of each seed (`tamenet.compress.deploy`): fp32, torchao int8
  weight-only, fp16 and bf16: parameters, bytes on disk (torch.save of the state dict), median latency of a
  batch of 256 rows on ONE thread, test accuracy.

Accuracy is the test accuracy of the member early stopping chose, mean +- std (ddof 1) over the seeds,
all measured in one run of this script, side by side. Published: int8 is within 1-2 points of float,
4-bit weights lose more than 8-bit (Jacob et al. 2018; Krishnamoorthi 2018).

    OMP_NUM_THREADS=1 python bench/bench_quantize.py [--epochs 30] [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tamenet.api import fit  # noqa: E402
from tamenet.compress.deploy import deploy_table, slower_note  # noqa: E402
from tamenet.compress.ptq import Scheme, quantize_run  # noqa: E402
from tamenet.data import prepare  # noqa: E402
from tamenet.models.export import export_member  # noqa: E402
from tamenet.trained import load_run  # noqa: E402

QUIET = {"tensorboard": False, "plots": False}
QUANT = {"symmetric": False, "per_channel": True}


def base(epochs: int, seeds: list[int]) -> dict:
    return {"data": {"name": "mnist1d"}, "model": {"kind": "cnn", "channels": [32, 32], "head_widths": [64]},
            "train": {"epochs": epochs, "lr": 3e-3, "batch_size": 64, "early_stopping": {"patience": 10}},
            "track": QUIET, "seed": seeds}


def _accuracy(values: list[float]) -> str:
    a = np.asarray(values) * 100
    return f"{a.mean():6.2f} +- {a.std(ddof=1) if len(a) > 1 else 0.0:4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (early stopping, patience 10)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; the machine was shared with other jobs")
    rows: list[tuple[str, list[float]]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        float_dir = Path(tmp) / "float"
        float_run = fit(base(args.epochs, seeds), out=float_dir)
        rows.append(("float32", [m["test"]["accuracy"] for m in float_run.summary["per_member"]]))
        for name, scheme in (("PTQ 8-bit weights", Scheme(8, per_channel=True)),
                             ("PTQ 4-bit weights", Scheme(4, per_channel=True)),
                             ("PTQ 8-bit weights + activations", Scheme(8, per_channel=True, activations=True))):
            result = quantize_run(float_dir, scheme, Path(tmp) / name.replace(" ", "_").replace("+", ""))
            rows.append((name, result.after["test"]["accuracy"]))
        qat = fit({**base(args.epochs, seeds + seeds), "quantize": {"bits": [8] * len(seeds) + [4] * len(seeds),
                                                                    **QUANT}})
        test = [m["test"]["accuracy"] for m in qat.summary["per_member"]]
        rows += [("QAT 8-bit weights", test[:len(seeds)]), ("QAT 4-bit weights", test[len(seeds):])]
        qat_a = fit({**base(args.epochs, seeds), "quantize": {"bits": 8, "activations": True, **QUANT}})
        rows.append(("QAT 8-bit weights + activations", [m["test"]["accuracy"] for m in qat_a.summary["per_member"]]))
        print(f"\nmnist1d CNN (channels 32-32, head 64), test accuracy % over {len(seeds)} seeds "
              f"(asymmetric, per output channel)")
        for name, values in rows:
            print(f"{name:>34}  {_accuracy(values)}")

        trained = load_run(float_dir)
        data = prepare(trained.recipe.data)
        tables = [deploy_table(export_member(trained.model, m), data.X_test, data.y_test) for m in seeds]
    print(f"\ndeployment of the float member (1 thread, batch 256 rows; accuracy over {len(seeds)} seeds, "
          "bytes and ms of seed 0)")
    print(f"{'format':>6}  {'parameters':>10}  {'bytes':>9}  {'ms/batch':>8}  {'vs fp32':>7}  accuracy %")
    for i, row in enumerate(tables[0]):
        print(f"{row['format']:>6}  {row['parameters']:>10}  {row['bytes']:>9}  {row['seconds'] * 1e3:8.3f}  "
              f"{row['vs_fp32']:7.2f}  {_accuracy([t[i]['metric'] for t in tables])}")
    print(slower_note(tables[0]))
    print("(torchao's int8 weight-only configuration quantizes nn.Linear layers only: the convolutions stay fp32)")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
