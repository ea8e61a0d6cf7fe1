"""`tamenet evaluate` and `tamenet predict`: a run's model on its own splits, or on new rows of a CSV file."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import count

if TYPE_CHECKING:
    import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="re-evaluate a run's model on its train/validation/test splits",
                              description="Reload a run's model and re-evaluate it on its train / validation / test "
                                          "splits (the data fingerprint must match the one recorded in run.json).")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by tamenet train")

    predict = sub.add_parser("predict", help="predict for new rows of a CSV file with a run's model",
                             description="Predict for new rows of a CSV file with a run's model.")
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by tamenet train")
    predict.add_argument("--input", required=True, metavar="FILE.csv",
                         help="CSV of new rows. With a header (the usual case): columns are matched by name; it "
                              "must name every training feature, in any order, and may hold the training target "
                              "column (ignored); any other column is refused. Without a header (every field of "
                              "the first row a number): exactly the training features per row, in training order. A "
                              "model saved without feature names takes the columns by position")
    predict.add_argument("--output", metavar="OUT.csv",
                         help="write predictions here, atomically (default: standard output)")
    predict.add_argument("--member", type=count(0), metavar="K",
                         help="use one member of a population (default: average them)")
    predict.add_argument("--mc", type=count(1, "the number of dropout masks T >= 1"), metavar="T",
                         help="Monte-Carlo dropout: average T dropout masks; adds standard deviations and entropy")


def run(args: argparse.Namespace) -> int:
    return run_evaluate(args) if args.command == "evaluate" else run_predict(args)


def check_run_dir(path: str, *, command: str) -> Path:
    """The run directory a command reads, refused in one line when it is not one; a note on stderr when its
    run did not finish (crashed, still running, interrupted, failed)."""
    from .track.lock import run_state

    folder = Path(path)
    if not folder.is_dir():
        what = "a file" if folder.exists() else "nothing there"
        raise FileNotFoundError(f"{folder}: expected a run directory written by tamenet train, got {what}")
    state = run_state(folder)
    name = state.get("state")
    if name == "crashed":
        print(f"tamenet {command}: note: this run crashed ({state['note']}); model.pt holds the best weights "
              "saved before that", file=sys.stderr)
    elif name in ("running", "interrupted", "failed"):
        print(f"tamenet {command}: note: this run is {name}" + (f" ({state['message']})" if state.get("message") else "")
              + "; model.pt holds the best weights saved so far", file=sys.stderr)
    return folder


def check_output(path: str) -> Path:
    """--output: a file path whose folder exists and can be written (checked before the model is loaded)."""
    import os

    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(f"--output {out}: expected a file path, got a folder")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"--output {out}: its folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise PermissionError(f"--output {out}: cannot write there (read-only or no permission)")
    return out


def run_evaluate(args: argparse.Namespace) -> int:
    from .track import format_table
    from .trained import evaluate_run

    check_run_dir(args.run_dir, command="evaluate")
    result = evaluate_run(args.run_dir)
    metric = result["metric"]
    header = ["split", "member", "loss", metric]
    rows = []
    for split in ("train", "val", "test"):
        if split in result:
            for m, (loss, value) in enumerate(zip(result[split]["loss"], result[split][metric])):
                rows.append([split, m, loss, value])
    print(format_table(header, rows, title=f"{args.run_dir} ({result['task']})"))
    return 0


SHOWN_NAMES = 8
"""Column names an error message lists before it says how many more there are."""


def read_feature_csv(path: str | Path, feature_names: tuple[str, ...] | None, n_features: int, *,
                     target: str | None = None) -> np.ndarray:
    """The feature rows [N, F] of a CSV file, as float32 columns in training order.

    The first row is a header unless every field of it is a number (and it is not the training
    feature names themselves). A header must name the training features (`feature_names`), in any
    order; the training `target` column may be there too and is ignored; anything else is refused.
    A file without a header must have exactly the F feature values per row, in training order.
    When `feature_names` is None (a checkpoint saved without them), the columns are taken by
    position: the header (if any) must then have exactly F columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [(line, [cell.strip() for cell in row]) for line, row in enumerate(csv.reader(handle), start=1)]
    rows = [(line, row) for line, row in rows if any(row)]  # blank lines
    if not rows:
        raise ValueError(f"{path}: empty file, expected a header row and data rows")
    first = rows[0][1]
    has_header = not all(_is_number(cell) for cell in first) or (
        feature_names is not None and sorted(first) == sorted(feature_names))
    if has_header:
        columns = header_columns(first, feature_names, n_features, target=target, where=str(path))
        names, body = first, rows[1:]
    else:
        if len(first) != n_features:
            raise ValueError(
                f"{path}: the first row is all numbers, so the file is read without a header: expected "
                f"{n_features} values per row, the feature columns in training order, got {len(first)}"
            )
        columns, names, body = list(range(n_features)), [f"column {i + 1}" for i in range(n_features)], rows
    if not body:
        raise ValueError(f"{path}: expected data rows after the header, got none")
    return feature_values(body, columns, names, where=str(path))


def header_columns(header: list[str], feature_names: tuple[str, ...] | None, n_features: int, *,
                   target: str | None, where: str) -> list[int]:
    """For each training feature in order, the index of its column in `header` (see `read_feature_csv`)."""
    if feature_names is None:  # an old checkpoint without names: by position, as tamenet did before names
        if len(header) != n_features:
            raise ValueError(
                f"{where}: expected {n_features} feature columns (this model was saved without its feature "
                f"names, so the columns are taken by position), got {len(header)} columns"
            )
        return list(range(n_features))
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"{where}: the header names a column more than once: {_listed(repeated)}")
    missing = [name for name in feature_names if name not in header]
    unexpected = [name for name in header if name not in feature_names and name != target]
    if missing or unexpected:
        also = f"; the target '{target}' may be there too" if target is not None else ""
        raise ValueError(
            f"{where}: expected {len(feature_names)} feature columns named as in training "
            f"({_listed(list(feature_names))}, in any order{also}), got {len(header)} columns: "
            f"missing {_listed(missing) or 'none'}; unexpected {_listed(unexpected) or 'none'}"
        )
    return [header.index(name) for name in feature_names]


def feature_values(body: list[tuple[int, list[str]]], columns: list[int], names: list[str], *,
                   where: str) -> np.ndarray:
    """The cells of `columns` of every (line number, fields) row as float32 [N, len(columns)]."""
    width = len(names)
    import numpy as np

    values = np.empty((len(body), len(columns)), dtype=np.float32)
    for r, (line, row) in enumerate(body):
        if len(row) != width:
            raise ValueError(f"{where}, line {line}: expected {width} fields as in the first row, got {len(row)}")
        for j, c in enumerate(columns):
            try:
                values[r, j] = float(row[c])
            except ValueError:
                raise ValueError(
                    f"{where}, line {line}: expected a number in column '{names[c]}', got {row[c]!r}"
                ) from None
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _listed(names: list[str]) -> str:
    """Up to `SHOWN_NAMES` names, comma-separated, then how many more."""
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def run_predict(args: argparse.Namespace) -> int:
    check_run_dir(args.run_dir, command="predict")
    if args.output:
        check_output(args.output)
    if not Path(args.input).is_file():
        raise FileNotFoundError(f"--input {args.input}: " + ("expected a CSV file, got a folder" if Path(args.input).is_dir()
                                                             else "input file not found"))
    from .trained import load_run

    trained = load_run(args.run_dir)
    names = trained.feature_names
    if names is None:
        print("tamenet predict: note: this model was saved without its feature names; "
              "the input's columns are taken by position", file=sys.stderr)
    X = read_feature_csv(args.input, names, int(trained.preprocessing["n_features"]), target=trained.target_name)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if args.mc is not None:
        pred = trained.predict_mc(X, args.mc, member=args.member)
    else:
        pred = trained.predict(X, member=args.member)
    if "label" in pred:
        classes = [str(c) for c in trained.preprocessing["classes"]]
        if args.mc is not None:
            writer.writerow(["prediction", *[f"p_{c}" for c in classes], *[f"std_{c}" for c in classes], "entropy"])
            for label, probs, std, entropy in zip(pred["label"], pred["probabilities"], pred["std"], pred["entropy"]):
                writer.writerow([label, *[f"{p:.6f}" for p in probs], *[f"{s:.6f}" for s in std], f"{entropy:.6f}"])
        else:
            writer.writerow(["prediction", *[f"p_{c}" for c in classes]])
            for label, probs in zip(pred["label"], pred["probabilities"]):
                writer.writerow([label, *[f"{p:.6f}" for p in probs]])
    elif args.mc is not None:
        writer.writerow(["prediction", "std"])
        writer.writerows([[f"{v:.6g}", f"{s:.6g}"] for v, s in zip(pred["value"], pred["std"])])
    else:
        writer.writerow(["prediction"])
        writer.writerows([[f"{v:.6g}"] for v in pred["value"]])
    if args.output:
        from .track import atomic_write_text

        atomic_write_text(Path(args.output), buffer.getvalue())
        print(f"{len(X)} predictions written to {args.output}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0
