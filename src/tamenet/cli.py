"""The command line: a thin layer where every command is one library call.

    tamenet train [RECIPE.yaml] [--set key=value ...] [--out DIR] [--resume DIR] [--ensemble M] [--keep-last]
    tamenet cv [RECIPE.yaml] [--scheme kfold|stratified|repeated|bootstrap|lpo|loo|holdout] [--folds K]
    tamenet search [RECIPE.yaml] --grid KEY=VALUES ... [--folds K] [--scheme ...] [--nested K]
    tamenet search [RECIPE.yaml] --trials N --space KEY=LOW:HIGH[:log] ... [--sampler tpe|random] [--nested K]
    tamenet evaluate RUN_DIR
    tamenet predict RUN_DIR --input FILE.csv [--output OUT.csv] [--member K] [--mc T]
    tamenet runs [DIR]
    tamenet datasets
    tamenet report DIR
    tamenet preview [RECIPE.yaml] --out grid.png [--photos]
    tamenet export RUN_DIR --format pt|onnx [--member K] [--out FILE]
    tamenet quantize RUN_DIR --bits B [--per-channel] [--symmetric] [--activations] [--out DIR] [--format F]
    tamenet serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--token T]
    tamenet study-server --storage DATABASE_URL [--host 127.0.0.1] [--port 13000]

A user mistake ends with one line on stderr and exit code 2 (`--debug` shows the traceback); what
counts as one is decided by type in `tamenet.errors` (ValueError, TypeError, OSError, YAML errors,
out of memory, tamenet's `UserError`s), so it holds for every command; anything else is a bug and
shows its traceback. A run whose every member diverged exits 1; Ctrl-C exits 130 after finishing
the run directory.

**Fast to start.** Arguments are parsed, and recipes read and checked (`recipe_files.py`: YAML,
keys, types, ranges), before torch, scikit-learn or matplotlib are imported; `tamenet --help` and
a mistaken recipe answer in a fraction of a second (bench/bench_cli.py).

**Adding a command** is one line here: write `src/tamenet/cli_<name>.py` with

    def add_parser(sub) -> None:      # sub.add_parser("<name>", help=...), argparse only, help for every option
    def run(args) -> int:             # the command; heavy imports inside

and add `"<name>": "cli_<name>",` to `COMMANDS` below. A module may register several commands
(`cli_select` has cv and search); list each under its module. Every command gets `--debug`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from .errors import USER_ERRORS, error_line, is_user_error  # noqa: F401  (USER_ERRORS: public here too)

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 1, 130

COMMANDS: dict[str, str] = {
    "train": "cli_train",
    "cv": "cli_select",
    "search": "cli_select",
    "evaluate": "cli_predict",
    "predict": "cli_predict",
    "runs": "cli_runs",
    "datasets": "cli_datasets",
    "report": "cli_report",
    "preview": "cli_preview",
    "export": "cli_export",
    "prune": "cli_prune",
    "shrink": "cli_shrink",
    "quantize": "cli_quantize",
    "distill": "cli_distill",
    "serve": "cli_serve",
    "study-server": "cli_study_server",
}
"""Command -> the module of this package that defines it (`add_parser(sub)`, `run(args)`), in --help order."""


class Parser(argparse.ArgumentParser):
    """argparse, with its mistakes on one line: "tamenet train: error: ... (see tamenet train --help)"."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f".{COMMANDS[name]}", __package__)


def build_parser() -> Parser:
    parser = Parser(prog="tamenet", description="Train neural networks that generalize.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f".{module}", __package__).add_parser(sub)
    for name, command in sub.choices.items():
        if not any("--debug" in action.option_strings for action in command._actions):
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show the full traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a mistaken argument (2, already printed on one line)
        return stop.code if isinstance(stop.code, int) else EXIT_USER_ERROR
    try:
        return command_module(args.command).run(args)
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print(f"tamenet {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if getattr(args, "debug", False) or not is_user_error(err):
            raise
        print(f"tamenet {args.command}: error: {error_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


# ----------------------------------------------------------------- argument types shared by the commands
def count(low: int, expected: str | None = None) -> "argparse._ActionType":
    """An argparse type: a whole number >= low; `expected` words what is expected (default "a whole number of
    at least LOW")."""
    expected = expected or f"a whole number of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


class LazyChoices:
    """argparse `choices` read from a registry dict of the package on first use (in --help, or when the option is
    given), so that building the parser imports nothing heavy, e.g. ``LazyChoices("select.splits", "SCHEMES")``."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def names(self) -> list[str]:
        return list(getattr(importlib.import_module(f".{self.module}", __package__), self.name))

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, value: object) -> bool:
        return value in self.names()

    def __len__(self) -> int:
        return len(self.names())


def share(text: str) -> float:
    """An argparse type: a share in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {value:g}")
    return value


def __getattr__(name: str):  # the helpers that lived here before the commands had modules of their own
    moved = {"summary_text": "cli_train", "read_feature_csv": "cli_predict", "header_columns": "cli_predict",
             "feature_values": "cli_predict"}
    if name not in moved:
        raise AttributeError(f"module 'tamenet.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{moved[name]}", __package__), name)


if __name__ == "__main__":
    sys.exit(main())
