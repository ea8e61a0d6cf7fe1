"""Network slimming on a CNN (H1): L1 on BatchNorm gammas, cut 50 % of the channels, fine-tune; and structured
against unstructured (CSR) pruning of one model.

Liu et al., "Learning efficient convolutional networks through network slimming", ICCV 2017: train with
`lambda sum |gamma|` on every BatchNorm's multipliers, remove the channels of smallest |gamma|, fine-tune;
published: the slimmed network stays within about a point of the dense one with fewer FLOPs.

Data: `digits` (8x8 grey images, 1797 rows, built into scikit-learn), a CNN of two conv blocks (32, 64
channels, BatchNorm, max pooling) and global average pooling. digits rather than mnist1d because it is
an image task a CNN is meant for and it trains in seconds per member on a shared 2-core machine.

One population of 2 x 3 members trains everything at once: penalty.bn_l1 = 0 (dense) and LAMBDA
(slimming) on seeds 0, 1, 2, SGD with momentum 0.9 (as the paper; with Adam, whose step is about lr
whatever the gradient's size, the L1 term shrank every gamma alike instead of making a few small),
early stopping on the validation split with the best weights restored. Then
every member is exported as plain PyTorch, 50 % of the channels of each conv layer with the smallest
|gamma| cut (`tamenet.compress.structured.prune_structured`, importance bn_gamma) and fine-tuned
FINE_TUNE epochs with Adam (lr 1e-3) on the training rows. "cut without L1" is the same cut and
fine-tuning of the dense members. Test accuracy: mean +- std over the 3 seeds.

    OMP_NUM_THREADS=1 python bench/bench_slimming.py [--lambda 1e-2] [--epochs 40] [--fine-tune 15]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from tamenet.api import fit  # noqa: E402
from tamenet.compress.prune import magnitude_masks, storage_bytes, to_storage  # noqa: E402
from tamenet.compress.shrink import score  # noqa: E402
from tamenet.compress.structured import fine_tune, latency_ms, prune_structured  # noqa: E402
from tamenet.models.export import export_member  # noqa: E402

SEEDS = [0, 1, 2]
SHARE = 0.5
QUIET = {"tensorboard": False, "plots": False, "checkpoint": False}


def recipe(lam: float, epochs: int) -> dict:
    return {"data": {"name": "digits"},
            "model": {"kind": "cnn", "channels": [32, 64], "norm": "batch", "pool": "max", "readout": "gap"},
            "train": {"epochs": epochs, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 64,
                      "early_stopping": {"patience": 15}},
            "penalty": {"bn_l1": [0.0] * len(SEEDS) + [lam] * len(SEEDS)},
            "seed": SEEDS + SEEDS, "track": QUIET}


def mean_std(values: list[float]) -> str:
    a = np.asarray(values)
    return f"{100 * a.mean():.2f} +- {100 * a.std(ddof=1):.2f}"


def unstructured_csr(plain: torch.nn.Module, share: float) -> tuple[torch.nn.Module, int, int]:
    """A copy with `share` of every conv / linear weight tensor's smallest |w| zeroed (layer-wise magnitude masks),
    its nonzero parameter count and its bytes with each weight stored as the smaller of dense and CSR."""
    import copy

    sparse = copy.deepcopy(plain)
    total_bytes, nonzero = 0, 0
    with torch.no_grad():
        for name, tensor in sparse.state_dict().items():
            if name.endswith("weight") and tensor.dim() >= 2:
                keep = magnitude_masks([tensor.unsqueeze(0)], share)[0][0]
                tensor.mul_(keep)
                stored = to_storage(tensor)
                total_bytes += storage_bytes(stored)
            else:
                total_bytes += tensor.numel() * tensor.element_size()
        nonzero = sum(int(torch.count_nonzero(p)) for p in sparse.parameters())
    return sparse, nonzero, total_bytes


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def file_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambda", dest="lam", type=float, default=1e-2, help="penalty.bn_l1 of the slimmed members")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (early stopping, patience 15)")
    parser.add_argument("--fine-tune", dest="tune", type=int, default=15, help="fine-tuning epochs after the cut")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("machine:", machine_info(("torch_pruning",)))
    print("note: measured on a machine shared with other jobs; latencies are medians, compare them side by side")
    started = time.perf_counter()
    result = fit(recipe(args.lam, args.epochs))
    data = result.data
    X_test, y_test = data.X_test, data.y_test
    example = data.X_train[:256]
    print(f"trained 6 members in {time.perf_counter() - started:.0f} s; the epoch early stopping kept, per member: "
          f"{[m['best_epoch'] for m in result.summary['per_member']]}")
    rows: dict[str, list[float]] = {k: [] for k in ("dense", "dense_cut", "dense_cut_tuned", "slim", "slim_cut",
                                                    "slim_cut_tuned")}
    figures = {}
    for m in range(2 * len(SEEDS)):
        kind = "dense" if m < len(SEEDS) else "slim"
        plain = export_member(result.model, m).eval()
        small, summary = prune_structured(plain, example, share=SHARE, unit="channels", importance="bn_gamma")
        rows[kind].append(score(plain, X_test, y_test, "classification"))
        rows[f"{kind}_cut"].append(score(small, X_test, y_test, "classification"))
        fine_tune(small, data.X_train, data.y_train, epochs=args.tune, lr=1e-3, seed=SEEDS[m % len(SEEDS)])
        rows[f"{kind}_cut_tuned"].append(score(small, X_test, y_test, "classification"))
        figures[kind] = summary
        if m == len(SEEDS):
            gammas = torch.cat([g.detach().abs().reshape(-1) for n, g in plain.named_parameters()
                                if n.endswith("weight") and g.dim() == 1])
            print(f"slimmed member: |gamma| quantiles 10/50/90 %: "
                  f"{[round(float(q), 4) for q in torch.quantile(gammas, torch.tensor([0.1, 0.5, 0.9]))]}")
    before, after = figures["slim"].before, figures["slim"].after
    print(f"\nnetwork slimming on digits, CNN 32-64 channels, cut {SHARE:.0%} of every conv layer's channels "
          f"by |gamma|, fine-tuned {args.tune} epochs; test accuracy %, mean +- std over seeds {SEEDS}")
    print(f"{'':34} {'accuracy':>16} {'params':>8} {'MACs/row':>9} {'latency ms':>10}")
    line = "{:34} {:>16} {:>8} {:>9} {:>10.3f}"
    print(line.format("dense CNN (no L1)", mean_std(rows["dense"]), before["parameters"], before["macs"],
                      before["latency_ms"]))
    print(line.format(f"dense CNN with L1 {args.lam:g} (uncut)", mean_std(rows["slim"]), before["parameters"],
                      before["macs"], before["latency_ms"]))
    print(line.format("slimmed: L1, cut, no fine-tune", mean_std(rows["slim_cut"]), after["parameters"],
                      after["macs"], after["latency_ms"]))
    print(line.format("slimmed: L1, cut, fine-tuned", mean_std(rows["slim_cut_tuned"]), after["parameters"],
                      after["macs"], after["latency_ms"]))
    print(line.format("cut without L1, no fine-tune", mean_std(rows["dense_cut"]), after["parameters"],
                      after["macs"], after["latency_ms"]))
    print(line.format("cut without L1, fine-tuned", mean_std(rows["dense_cut_tuned"]), after["parameters"],
                      after["macs"], after["latency_ms"]))
    gap = 100 * (np.mean(rows["dense"]) - np.mean(rows["slim_cut_tuned"]))
    print(f"slimmed vs dense: {gap:+.2f} points lower (published target: within 1 point), "
          f"{before['macs'] / after['macs']:.2f}x fewer MACs, {before['parameters'] / after['parameters']:.2f}x "
          f"fewer parameters")

    # unstructured (CSR) against structured pruning of one model: the first dense member
    plain = export_member(result.model, 0).eval()
    models = [("dense", plain, sum(p.numel() for p in plain.parameters()), tensor_bytes(plain),
               file_bytes(plain.state_dict()))]
    for share in (SHARE, 0.8):
        sparse, nonzero, csr = unstructured_csr(plain, share)
        models.append((f"unstructured {share:.0%}, CSR", sparse, nonzero, csr,
                       file_bytes({n: to_storage(t) for n, t in sparse.state_dict().items()})))
    small, _ = prune_structured(plain, example, share=SHARE, unit="channels", importance="l1")
    structured = ("structured 50% channels", small, sum(p.numel() for p in small.parameters()), tensor_bytes(small),
                  file_bytes(small.state_dict()))
    models.append(structured)
    accuracy = [score(model, X_test, y_test, "classification") for _, model, *_ in models]
    tuned = structured[1]
    fine_tune(tuned, data.X_train, data.y_train, epochs=args.tune, lr=1e-3, seed=0)
    models.append((f"  the same, fine-tuned {args.tune} ep", *structured[1:]))
    accuracy.append(score(tuned, X_test, y_test, "classification"))
    # latencies measured round-robin, 3 rounds, the smallest median kept: the machine is shared
    latency = [min(ms) for ms in zip(*[[latency_ms(model, example) for _, model, *_ in models] for _ in range(3)])]
    print(f"\nunstructured (layer-wise magnitude masks, stored as CSR with int32 indices where smaller than dense) vs "
          f"structured ({SHARE:.0%} of the channels by l1) pruning of dense member 0, no fine-tuning unless said; "
          f"latency: 256 rows, 1 thread, min over 3 rounds of the median of 30")
    print(f"{'':30} {'params (nonzero)':>16} {'bytes':>8} {'file bytes':>10} {'latency ms':>10} {'accuracy %':>10}")
    for (name, _, params, size, stored), ms, acc in zip(models, latency, accuracy):
        print(f"{name:30} {params:>16} {size:>8} {stored:>10} {ms:>10.3f} {100 * acc:>10.2f}")
    print("bytes: the tensors' own bytes (CSR: values + int32 column indices + row pointers, only where smaller than "
          "dense: below about 50 % density for float32); file bytes: torch.save of them (pickle overhead included). "
          "The masked model computes with dense zeros: no faster than dense.")
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
