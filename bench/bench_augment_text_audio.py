"""Text and audio augmentation (E2, E3) against none, on small training sets, 3 seeds as one population.

* text: Sentiment Labelled Sentences (3,000 sentences, `../shared/data/sentiment`), a bag-of-words MLP
  (one hidden layer of 64, dropout 0.5) on `--text-per-class` training sentences per class; augmentation:
  synonym replacement (the built-in map) and random word deletion, strings re-drawn every epoch per member;
* audio: the Free Spoken Digit Dataset (`../shared/data/fsdd/recordings`, 8 kHz) with one speaker held out
  as the test set and one as validation (``data.groups: speaker``: the model is judged on a voice it never
  heard), a log-mel MLP on `--audio-per-class` training recordings per digit; augmentation: pitch shift,
  time stretch, trimming and white noise, per batch and member.

Each study trains ONE population of 2 x `--seeds` members: seeds 0..S-1 without augmentation and the same
seeds with it, so both arms see the same initial weights and batch orders. Reported: test accuracy (mean,
standard deviation and range over the seeds), validation accuracy, best epoch. The data sets are read from
`../shared/data` relative to the repository root; a study whose folder is absent is skipped with a message.

    PYTHONPATH=src python bench/bench_augment_text_audio.py                 # both studies, ~5 min on 2 shared cores
    PYTHONPATH=src python bench/bench_augment_text_audio.py --only text --epochs 40

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from tamenet.train.text_audio_fit import fit_augmented

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _population(base: dict, seeds: int) -> dict:
    return {**base, "seed": list(range(seeds)) * 2}


def _arm(values: dict, seeds: int) -> dict:
    """Per-member lists: strength 0 for the first `seeds` members, the value for the others."""
    return {k: [0.0] * seeds + [v] * seeds if k != "p" else [v] * (2 * seeds) for k, v in values.items()}


def _report(name: str, result, seeds: int, seconds: float) -> list[str]:
    members = result.summary["per_member"]
    lines = []
    for arm, rows in (("none", members[:seeds]), ("augmented", members[seeds:])):
        test = [m["test"]["accuracy"] for m in rows]
        val = [m["val"]["accuracy"] for m in rows]
        lines.append(f"{name:<9} {arm:<10} {statistics.mean(test):>9.4f} {statistics.pstdev(test):>7.4f} "
                     f"{min(test):.4f}-{max(test):.4f} {statistics.mean(val):>9.4f} "
                     f"{','.join(str(m['best_epoch']) for m in rows):>12}")
    lines.append(f"{'':<9} (population of {2 * seeds}, {result.summary['sizes']}, {seconds:.0f} s)")
    return lines


def text_study(args) -> list[str]:
    folder = DATA / "sentiment"
    if not folder.is_dir():
        return [f"text: skipped, {folder} not found"]
    recipe = _population({
        "data": {"name": "sentiment", "path": str(folder), "val": 0.2, "test": 0.3},
        "model": {"widths": [64], "dropout": [0.0, 0.5]},
        "train": {"optimizer": "adam", "lr": 1e-3, "epochs": args.epochs, "batch_size": 32, "device": "cpu",
                  "early_stopping": {"monitor": "val_loss", "patience": 8}},
    }, args.seeds)
    ops = _arm({"synonym": 0.3, "word_delete": 0.15}, args.seeds)
    start = time.perf_counter()
    result = fit_augmented(recipe, text=ops, train_per_class=args.text_per_class)
    return _report("text", result, args.seeds, time.perf_counter() - start)


def audio_study(args) -> list[str]:
    folder = DATA / "fsdd" / "recordings"
    if not folder.is_dir():
        return [f"audio: skipped, {folder} not found"]
    recipe = _population({
        "data": {"name": "audio", "path": str(folder), "groups": "speaker", "val": 0.2, "test": 1 / 6},
        "model": {"widths": [128], "dropout": [0.2, 0.5]},
        "train": {"optimizer": "adam", "lr": 1e-3, "epochs": args.epochs, "batch_size": 32, "device": "cpu",
                  "early_stopping": {"monitor": "val_loss", "patience": 8}},
    }, args.seeds)
    ops = _arm({"p": 0.5, "pitch": 2.0, "stretch": 0.15, "trim": 0.15, "noise": 20.0}, args.seeds)
    start = time.perf_counter()
    result = fit_augmented(recipe, audio=ops, train_per_class=args.audio_per_class)
    return _report("audio", result, args.seeds, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30; patience 8)")
    parser.add_argument("--text-per-class", type=int, default=100, help="training sentences per class (default 100)")
    parser.add_argument("--audio-per-class", type=int, default=30, help="training recordings per digit (default 30)")
    parser.add_argument("--only", choices=["text", "audio"], help="run one study only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); this machine's 2 cores were shared with other jobs, "
          "so times are indicative only")
    print(f"{'study':<9} {'arm':<10} {'test acc':>9} {'std':>7} {'range':<13} {'val acc':>9} {'best epochs':>12}")
    for study in (text_study, audio_study):
        if args.only and study.__name__ != f"{args.only}_study":
            continue
        for line in study(args):
            print(line, flush=True)


if __name__ == "__main__":
    main()
