"""`tamenet distill`: train a student on a teacher run's softened logits (the recipe's `distill:` section).

    tamenet distill --teacher runs/teacher recipes/student.yaml --temperature 1,4,20 --alpha 0.5

A thin layer over `tamenet train`: the options become `distill.teacher`, `distill.temperature` and
`distill.alpha` (several comma-separated values train as members of one population), and the run directory
is the same as train's. A teacher trained with `--ensemble` (or any population) gives its members' average.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_report import add_no_report
from .cli_train import DEVICE_HELP


def _values(key: str, text: str) -> str:
    """'4' -> 'distill.temperature=4'; '1,4,20' -> 'distill.temperature=[1,4,20]' (one member each)."""
    parts = [p.strip() for p in text.split(",")]
    return f"distill.{key}={parts[0]}" if len(parts) == 1 else f"distill.{key}=[{','.join(parts)}]"


def add_parser(sub: argparse._SubParsersAction) -> None:
    text = "train a student recipe on a teacher run's softened logits (knowledge distillation)"
    distill = sub.add_parser("distill", help=text, description=text[0].upper() + text[1:] + ".")
    distill.add_argument("recipe", nargs="?", metavar="STUDENT_RECIPE",
                         help="the student's YAML recipe (default: the default job); its data must be the teacher's")
    distill.add_argument("--teacher", required=True, metavar="RUN_DIR",
                         help="a run directory trained on the same data and training rows (an --ensemble or "
                              "population run: its members' logits averaged)")
    distill.add_argument("--temperature", metavar="T",
                         help="softmax temperature T > 0 (default the recipe's, else 4); comma-separated values "
                              "train one member each")
    distill.add_argument("--alpha", metavar="A",
                         help="share in [0, 1] of the soft loss, alpha T^2 KL + (1 - alpha) CE (default the "
                              "recipe's, else 0.5); comma-separated values train one member each")
    distill.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recipe value, e.g. --set model.widths=[32] (repeatable)")
    distill.add_argument("--out", metavar="DIR",
                         help="run directory to write (default runs/<recipe name, else data-model>-<time>)")
    distill.add_argument("--ensemble", type=int, metavar="M",
                         help="train the student's seeds base..base+M-1 as one population and report their average")
    distill.add_argument("--keep-last", action="store_true", help="keep last.pt (the resume state) at the end")
    distill.add_argument("--device", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    add_no_report(distill)


def run(args: argparse.Namespace) -> int:
    from . import cli_train

    teacher = Path(args.teacher)
    if not (teacher / "model.pt").is_file():
        what = "a folder without model.pt" if teacher.is_dir() else ("a file" if teacher.exists() else "nothing there")
        raise FileNotFoundError(f"--teacher {teacher}: expected a run directory written by tamenet train, got {what}")
    overrides = [f"distill.teacher={teacher}", *args.overrides]
    overrides += [_values("temperature", args.temperature)] if args.temperature is not None else []
    overrides += [_values("alpha", args.alpha)] if args.alpha is not None else []
    train_args = argparse.Namespace(**{**vars(args), "overrides": overrides, "resume": None})
    return cli_train.run(train_args)
