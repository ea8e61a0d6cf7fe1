"""`tamenet prune`: iterative magnitude pruning after training, the lottery ticket (`compress/lottery.py`).

    tamenet prune recipes/lottery_mnist1d.yaml --rounds 10 --rate 0.2 --rewind init,reinit
    tamenet prune runs/sgd --rounds 3 --rewind keep --set train.epochs=20

The recipe (or the run directory's own) is read and checked, and the output folder checked, before torch is
imported. Each round is a run directory under --out (round-00 ... round-R) that evaluate, predict and export
read; rounds.csv holds every round's figures per arm and member, and one line per round is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import count
from .cli_train import DEVICE_HELP, check_out, default_out, device_overrides


def rate(text: str) -> float:
    """An argparse type: a share in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1), got {value:g}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    text = "iterative magnitude pruning after training (the lottery ticket): train, prune, rewind, R rounds"
    prune = sub.add_parser("prune", help=text, description=text[0].upper() + text[1:] + ".")
    prune.add_argument("source", nargs="?", metavar="RECIPE_OR_RUN_DIR",
                       help="a YAML recipe whose round 0 trains here (default: the default job), or a finished run "
                            "directory whose model is round 0")
    prune.add_argument("--rounds", type=count(1), required=True, metavar="R", help="pruning rounds after round 0")
    prune.add_argument("--rate", type=rate, default=0.2,
                       help="share of the surviving weights pruned per round, layer-wise or global as the recipe's "
                            "prune.scope says (default 0.2: after R rounds 1 - 0.8^R are pruned)")
    prune.add_argument("--rewind", default="init", metavar="MODES",
                       help="how each round starts the survivors: init (their initial values, the lottery ticket), "
                            "reinit (a fresh random initialization, the control) or keep (the trained values, "
                            "fine-tuned); several, comma-separated, train as arms of one population (default init)")
    prune.add_argument("--dense", action="store_true",
                       help="add a dense control arm (nothing pruned, rewound to its initialization every round)")
    prune.add_argument("--epoch-rewind", type=count(0), metavar="K",
                       help="the init arm rewinds to the weights after K epochs of round 0 (Frankle et al. 2020)")
    prune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. --set train.epochs=20 (repeatable; for a run directory, "
                            "the rounds after round 0)")
    prune.add_argument("--device", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    prune.add_argument("--out", metavar="DIR",
                       help="folder to write (default runs/<recipe name, else data-model>-lottery-<time>)")
    prune.add_argument("--progress", action="store_true", help="show each round's training progress")


def run(args: argparse.Namespace) -> int:
    from .recipe_files import parse_recipe, run_name

    overrides = device_overrides(args)
    source = Path(args.source) if args.source else None
    if source is not None and source.is_dir():
        if not (source / "model.pt").is_file():
            raise FileNotFoundError(f"{source}: expected a recipe file or a finished run directory (with model.pt), "
                                    "got a folder without model.pt")
        stem = f"{source.resolve().name}-lottery"
    else:
        light = parse_recipe(args.source, overrides)  # keys, types, ranges: before torch is imported
        stem = run_name(light, "lottery")
    modes = [m.strip() for m in args.rewind.split(",") if m.strip()]
    out = check_out(Path(args.out)) if args.out else default_out(stem)

    from .allocator import keep_freed_memory
    from .compress.lottery import arms_of, iterative_pruning, round_line

    arms_of(modes, args.rate, args.dense)  # an unknown mode is refused before round 0 trains
    keep_freed_memory()
    callbacks = []
    if args.progress:
        from .progress import make_progress

        callbacks.append(make_progress(sys.stdout))
    result = iterative_pruning(str(source) if source is not None else None, rounds=args.rounds, rate=args.rate,
                               rewind=modes, epoch_rewind=args.epoch_rewind, dense=args.dense, out=out,
                               overrides=overrides, callbacks=callbacks, keep_models=False,
                               on_round=lambda rows: print(round_line(rows, args.rounds), flush=True))
    print(f"rounds: {result.out / 'rounds.csv'}")
    print(f"run directory: {result.out}")
    return 0
