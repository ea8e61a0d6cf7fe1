"""`tamenet shrink RUN_DIR --share S [--unit neurons|channels|blocks] [--importance l1|l2|bn_gamma]`: structured
pruning of one member that really shrinks its tensors, optionally fine-tuned, saved with its shapes.

A command of its own rather than an `export` option: export writes a frozen deployment program of the
member as it is, while shrink changes the model (and may train it again) and reports what that cost.
argparse only at import time; torch and Torch-Pruning are imported when the command runs.
"""

from __future__ import annotations

import argparse

from .cli import count, share

UNITS = ("neurons", "channels", "blocks")
IMPORTANCES = ("l1", "l2", "bn_gamma")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value:g}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `shrink` command."""
    parser = sub.add_parser("shrink", help="structured pruning of a run's member: remove a share of its neurons, "
                                           "channels or residual blocks (smaller tensors), fine-tune, save",
                            description="Remove the share of a member's units of lowest importance through "
                                        "Torch-Pruning's dependency graph (needs the 'compress' extra), fine-tune "
                                        "it on the run's training rows, and save it as one file that rebuilds the "
                                        "smaller model (tamenet.compress.structured.load_shrunk reads it).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by tamenet train")
    parser.add_argument("--share", type=share, required=True, metavar="S",
                        help="the share of units to remove in every layer, in [0, 1) (blocks: of the removable blocks)")
    parser.add_argument("--unit", choices=UNITS, default="neurons",
                        help="neurons: hidden units of dense layers; channels: convolution channels; "
                             "blocks: residual blocks with an identity skip (default: neurons)")
    parser.add_argument("--importance", choices=IMPORTANCES, default="l1",
                        help="l1 / l2: magnitude of each unit's coupled weights; bn_gamma: |gamma| of its BatchNorm "
                             "(network slimming, after training with penalty.bn_l1) (default: l1)")
    parser.add_argument("--member", type=count(0), metavar="K",
                        help="the member of a population to shrink (required when the run has several)")
    parser.add_argument("--fine-tune", dest="epochs", type=count(0, "a whole number of epochs >= 0"), default=0,
                        metavar="EPOCHS", help="fine-tune the pruned model this many epochs with Adam (default 0)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="the fine-tuning learning rate (default 1e-3)")
    parser.add_argument("--population", action="store_true",
                        help="narrow every member of an MLP run at once (each keeps its own top-k units per hidden "
                             "layer) and write a new run directory that evaluate, predict and export read "
                             "(default RUN_DIR/narrowed); neurons only, no fine-tuning (train with "
                             "train.init_from=DIR for that)")
    parser.add_argument("--out", metavar="FILE",
                        help="the file to write (default RUN_DIR/shrunk/model-m<K>.pt); its summary goes to FILE.json; "
                             "with --population, the run directory to write")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def run(args: argparse.Namespace) -> int:
    """Shrink, then print the figures before and after and where the file went."""
    from .cli_predict import check_run_dir
    from .compress.shrink import shrink_run
    from .track import format_table

    check_run_dir(args.run_dir, command="shrink")
    if args.population:
        return run_population(args)
    file, info = shrink_run(args.run_dir, share=args.share, unit=args.unit, importance=args.importance,
                            member=args.member, epochs=args.epochs, lr=args.lr, out=args.out)
    before, after = info["before"], info["after"]
    rows = [["parameters", before["parameters"], after["parameters"]],
            ["MACs per row", before["macs"], after["macs"]],
            ["state dict bytes", before["bytes"], after["bytes"]],
            [f"latency ms ({info['latency_rows']} rows, 1 thread)", before["latency_ms"], after["latency_ms"]],
            [f"{info['metric']} ({info['split']})", info["scores"]["dense"],
             info["scores"].get("fine_tuned", info["scores"]["pruned"])]]
    title = (f"member {info['member']}: {args.share:g} of the {args.unit} removed by {args.importance}"
             + (f", fine-tuned {args.epochs} epochs" if args.epochs else "")
             + f" ({info['metric']} right after pruning: {info['scores']['pruned']:.4f})")
    print(format_table(["", "before", "after"], rows, title=title))
    if info["removed_blocks"]:
        print(f"blocks removed: {', '.join(info['removed_blocks'])}")
    print(f"saved: {file} (tamenet.compress.structured.load_shrunk), summary: {file.with_name(file.name + '.json')}")
    return 0


def run_population(args: argparse.Namespace) -> int:
    """`--population`: narrow every member's hidden layers, write a new run directory."""
    from .compress.shrink import narrow_run

    if args.unit != "neurons" or args.member is not None or args.epochs:
        raise ValueError("--population narrows the hidden neurons of every member at once; expected no --unit other "
                         "than neurons, no --member and no --fine-tune with it")
    folder, info = narrow_run(args.run_dir, share=args.share, importance=args.importance, out=args.out)
    before, after = info["scores"]["before"], info["scores"]["after"]
    print(f"widths {info['widths']['before']} -> {info['widths']['after']}, parameters "
          f"{info['parameters']['before']} -> {info['parameters']['after']}; {info['metric']} ({info['split']}) per "
          f"member before: {', '.join(f'{v:.4f}' for v in before)}; after: {', '.join(f'{v:.4f}' for v in after)}")
    print(f"narrowed run: {folder} (tamenet evaluate / predict / export read it)")
    return 0
