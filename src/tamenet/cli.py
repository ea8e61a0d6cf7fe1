"""The command line: a thin layer where every command is one library call.

    tamenet train [RECIPE.yaml] [--set key=value ...] [--out DIR] [--resume DIR] [--ensemble M]
    tamenet cv [RECIPE.yaml] [--scheme kfold|stratified|repeated|bootstrap|lpo|loo|holdout] [--folds K]
    tamenet search [RECIPE.yaml] --grid KEY=VALUES ... [--folds K] [--scheme ...] [--nested K]
    tamenet search [RECIPE.yaml] --trials N --space KEY=LOW:HIGH[:log] ... [--sampler tpe|random] [--nested K]
    tamenet evaluate RUN_DIR
    tamenet predict RUN_DIR --input FILE.csv [--output OUT.csv] [--member K] [--mc T]
    tamenet datasets
    tamenet preview [RECIPE.yaml] --out grid.png [--photos]

A user mistake ends with one line on stderr and exit code 2 (`--debug` shows the traceback);
a run whose every member diverged exits 1; Ctrl-C exits 130 after finishing the run directory.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import sys
from pathlib import Path

import numpy as np
import yaml

from . import cli_report
from . import cli_preview
from . import cli_export, cli_serve
from .allocator import keep_freed_memory
from .checkpoints import CheckpointError
from .config import RecipeError
from .select.cv import STOP_SHARE
from .select.memory import MEMORY_ENV
from .select.splits import MAX_SPLITS, SCHEMES
from .select.trials import BATCH, PRUNERS, SAMPLERS

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 1, 130
USER_ERRORS = (RecipeError, CheckpointError, ValueError, TypeError, KeyError, OSError, yaml.YAMLError)
"""Exceptions that end a command with one line and exit code 2: a user's mistake (a recipe, a value, a checkpoint
that cannot be used) or a file that cannot be read or written (OSError: missing, a directory, no permission)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tamenet", description="Train neural networks that generalize.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train the model a recipe describes (the default job without one)")
    train.add_argument("recipe", nargs="?", help="a YAML recipe file")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. --set train.lr=0.01 (repeatable)")
    train.add_argument("--out", help="run directory to write (default runs/<name>-<time>)")
    train.add_argument("--resume", help="continue the run in this directory from its last checkpoint")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"],
                       help="where to train (sets train.device; default: the recipe's, auto = the GPU when PyTorch sees one)")
    train.add_argument("--ensemble", type=int, metavar="M",
                       help="train seeds base..base+M-1 as one population and report their averaged prediction")
    train.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    cli_report.add_no_report(train)

    for name, text in (("cv", "cross-validate a recipe, all folds trained as one population"),
                       ("search", "grid or Optuna search with cross-validation; the best candidate refit and tested once")):
        sel = sub.add_parser(name, help=text)
        sel.add_argument("recipe", nargs="?", help="a YAML recipe file (default: the default job)")
        if name == "search":
            how = sel.add_mutually_exclusive_group(required=True)
            how.add_argument("--grid", action="append", metavar="KEY=VALUES",
                             help="values: 0,0.2,0.5 or a log range 1e-6:1e6:13 or a YAML list (repeatable)")
            how.add_argument("--trials", type=int, metavar="N", help="Optuna trials over the --space")
            sel.add_argument("--space", action="append", default=[], metavar="KEY=RANGE",
                             help="with --trials: LOW:HIGH, LOW:HIGH:log, or choices A,B,C / a YAML list (repeatable)")
            sel.add_argument("--sampler", default="tpe", choices=list(SAMPLERS), help="Optuna sampler (default tpe)")
            sel.add_argument("--pruner", default="median", choices=list(PRUNERS),
                             help="stops poor trials early (default median)")
            sel.add_argument("--batch", type=int, default=BATCH,
                             help=f"trials trained together as one population (default {BATCH})")
            sel.add_argument("--nested", type=int, metavar="K_OUTER",
                             help="nested cross-validation: an unbiased estimate of the whole search over K_OUTER outer folds")
            sel.add_argument("--no-refit", action="store_true", help="skip refitting the best candidate")
        sel.add_argument("--scheme", default="kfold", choices=list(SCHEMES),
                         help="validation scheme (default kfold; stratified keeps class shares)")
        sel.add_argument("--folds", type=int, default=10, help="folds, or splits for repeated/bootstrap (default 10)")
        sel.add_argument("--p", type=int, default=2, help="rows left out per split for lpo (default 2)")
        sel.add_argument("--max-splits", type=int, default=MAX_SPLITS, help="refuse lpo/loo with more splits")
        sel.add_argument("--stop-share", type=float, default=STOP_SHARE,
                         help="share of each fold's training rows that decides early stopping (default 0.2)")
        sel.add_argument("--halving", type=int, nargs="?", const=3, metavar="ETA",
                         help="successive halving: keep the best 1/ETA of the candidates at each rung (default ETA 3)")
        sel.add_argument("--max-memory", metavar="SIZE",
                         help=f"memory budget of a population, e.g. 2GB (default ${MEMORY_ENV} or half the RAM); "
                              "larger populations train in chunks")
        sel.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        sel.add_argument("--device", choices=["auto", "cpu", "cuda"],
                           help="where to train (sets train.device; default: the recipe's, auto = the GPU when PyTorch sees one)")
        sel.add_argument("--out", help="run directory to write (default runs/<name>-<command>-<time>)")
        sel.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
        cli_report.add_no_report(sel)

    evaluate = sub.add_parser("evaluate", help="re-evaluate a run's model on its train/validation/test splits")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    predict = sub.add_parser("predict", help="predict for new rows of a CSV file with a run's model")
    predict.add_argument("run_dir")
    predict.add_argument("--input", required=True,
                         help="CSV of new rows. With a header (the usual case): columns are matched by name; it "
                              "must name every training feature, in any order, and may hold the training target "
                              "column (ignored); any other column is refused. Without a header (every field of "
                              "the first row a number): exactly the training features per row, in training order. A "
                              "model saved without feature names takes the columns by position")
    predict.add_argument("--output", help="write predictions here (default: standard output)")
    predict.add_argument("--member", type=int, help="use one member of a population (default: average them)")
    predict.add_argument("--mc", type=int, metavar="T",
                         help="Monte-Carlo dropout: average T dropout masks; adds standard deviations and entropy")
    predict.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    datasets = sub.add_parser("datasets", help="list the built-in data sets")
    datasets.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    cli_report.add_parser(sub)
    cli_preview.add_parser(sub)
    cli_export.add_parser(sub)
    cli_serve.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "device", None):
        args.overrides.append(f"train.device={args.device}")
    keep_freed_memory()  # large populations reuse their freed gradient blocks (see allocator.py)
    commands = {"train": cmd_train, "cv": cmd_select, "search": cmd_select, "evaluate": cmd_evaluate,
                "predict": cmd_predict, "datasets": cmd_datasets, "report": cli_report.run,
                "preview": cli_preview.run, "export": cli_export.run, "serve": cli_serve.run}
    try:
        return commands[args.command](args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"tamenet {args.command}: error: {error_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def error_line(err: BaseException) -> str:
    """The message of a user error on one line (a KeyError's own text, not its repr; line breaks become spaces)."""
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(message.split()) or type(err).__name__


def _default_out(name: str | None) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name or 'run'}-{stamp}"
    path, n = base, 1
    while path.exists():
        path, n = Path(f"{base}-{n}"), n + 1
    return path


def cmd_train(args: argparse.Namespace) -> int:
    from .api import diverged_message, fit
    from .progress import make_progress
    from .recipes import load_recipe

    if args.resume:  # the run's own recipe, with --set overrides such as train.epochs=300
        recipe, out = None, Path(args.resume)
    else:
        recipe = load_recipe(args.recipe, args.overrides)
        out = Path(args.out) if args.out else _default_out(recipe.name)
    progress = make_progress(sys.stdout)
    with progress:
        result = fit(recipe, out=out, callbacks=[progress], resume=args.resume,
                     overrides=args.overrides if args.resume else None, ensemble=args.ensemble)
    print(summary_text(result.summary))
    print(f"run directory: {result.run_dir}")
    cli_report.after_job(args, result.run_dir)
    summary = result.summary
    if summary.get("interrupted"):
        print("interrupted: the run directory holds the best weights so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    diverged = [m.get("diverged_at_epoch") for m in summary.get("per_member", [summary])]
    if all(d is not None for d in diverged):
        print(f"tamenet train: {diverged_message(diverged)}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from .recipes import load_recipe
    from .select import cross_validate, search
    from .select.memory import format_size
    from .track import format_table

    recipe = load_recipe(args.recipe, args.overrides)
    out = Path(args.out) if args.out else _default_out(f"{recipe.name or 'run'}-{args.command}")
    options = dict(scheme=args.scheme, folds=args.folds, p=args.p, max_splits=args.max_splits,
                   stop_share=args.stop_share, halving=args.halving, out=out, max_memory=args.max_memory)
    if args.command == "cv":
        result = cross_validate(recipe, **options)
    else:
        result = search(recipe, grid=args.grid, trials=args.trials, space=args.space, sampler=args.sampler,
                        pruner=args.pruner, batch=args.batch, nested=args.nested, refit=not args.no_refit, **options)
    metric = result["metric"]
    trials = result.get("trials")
    keys = (list(result["grid"]) if result.get("grid") else list(trials["space"])) if args.command == "search" else []
    halved = bool(result.get("halving"))
    extra = ["dropped at epoch"] if halved else ["epochs", "pruned"] if trials else []
    header = [*(["trial"] if trials else ["candidate"]), *keys, f"train {metric}", f"cv {metric} mean", "std", *extra]
    rows = [[row["trial"] if trials else row["candidate"], *[row[k] for k in keys], row[f"train_{metric}_mean"],
             row[f"cv_{metric}_mean"], row[f"cv_{metric}_std"],
             *([row.get("dropped_at_epoch")] if halved else [row["epochs_trained"], row["pruned"]] if trials else [])]
            for row in result["candidates"]]
    title = f"{result['dataset']}: {result['scheme']}, {result['folds']} folds, {result['members']} members"
    print(format_table(header, rows, title=title))
    memory = result["memory"]
    chunks = memory["chunks"] if isinstance(memory["chunks"], list) else [memory["chunks"]]
    needed = f"about {format_size(memory['needed'])} needed" if memory["needed"] else "not estimated (one member)"
    if max(chunks) > 1:
        print(f"memory: {needed}, budget {format_size(memory['budget'])}: "
              f"trained in chunks of up to {memory['chunk_size']} members ({sum(chunks)} chunks)")
    else:
        print(f"memory: {needed}, budget {format_size(memory['budget'])}: one chunk of {memory['chunk_size']} members")
    if args.command == "search":
        best = result["best"]
        name = f"trial {best['trial']}" if trials else f"candidate {best['candidate']}"
        print(f"best: {name} ({', '.join(f'{k}={best[k]}' for k in keys)}), "
              f"cv {metric} {best[f'cv_{metric}_mean']:.4f} +- {best[f'cv_{metric}_std']:.4f}")
        if trials:
            print(f"{trials['count']} trials ({trials['sampler']}, batches of {trials['batch']}): "
                  f"{trials['pruned']} pruned, {trials['failed']} failed; "
                  f"{trials['member_epochs']} of {trials['member_epochs_without_pruning']} member-epochs trained")
        for report in result.get("halving") or []:
            print(f"successive halving: rungs at epochs {report['rungs']}, "
                  f"{report['compute_saved']:.0%} of the member-epochs saved")
        if result.get("nested"):
            nested = result["nested"]
            print(f"nested cv ({nested['outer_folds']} outer folds): {metric} {nested['mean']:.4f} +- {nested['std']:.4f} "
                  f"(the inner searches' best scores averaged {nested['inner_best_mean']:.4f})")
            for fold in nested["folds"]:
                chosen = ", ".join(f"{k}={v}" for k, v in fold["chosen"].items())
                print(f"  outer fold {fold['outer_fold']}: chose {chosen}; outer {metric} {fold['outer'][metric]:.4f}")
        if "refit" in result and result["refit"].get("test"):
            print(f"refit on all training rows: test {metric} {result['refit']['test'][metric]:.4f}")
    print(f"wall time {result['wall_time_s']:.1f} s; run directory: {result['run_dir']}")
    cli_report.after_job(args, result.get("run_dir"))
    return 0


def summary_text(summary: dict) -> str:
    """The short train / validation / test table printed after training."""
    from .track import format_table

    metric = summary["metric"]
    members = summary.get("per_member", [summary])
    splits = [s for s in ("train", "val", "test") if s in members[0]]
    if len(members) == 1:
        rows = [[s, members[0][s]["loss"], members[0][s][metric]] for s in splits]
        table = format_table(["split", "loss", metric], rows, title=f"{summary['dataset']} ({summary['task']})")
        gap = summary.get("generalization_gap")
        notes = [
            f"best epoch {summary['best_epoch']} of {summary['epochs_run']} run"
            + (" (stopped early)" if summary["stopped_early"] else ""),
            *([f"generalization gap: loss {gap['loss']:+.4f}, {metric} {gap[metric]:+.4f}"] if gap else []),
            f"{summary['parameters']:,} parameters, {summary['wall_time_s']:.1f} s",
        ]
        return table + "\n" + "\n".join(_validation_notes(summary) + notes + _ensemble_notes(summary, splits))
    header = ["member", *[k for k in members[0] if k not in _MEMBER_FIXED]]
    header += [f"{s} {metric}" for s in splits] + ["best epoch"]
    rows = []
    for m in members:
        rows.append([m["member"], *[m[k] for k in header[1 : len(header) - len(splits) - 1]],
                     *[m[s][metric] for s in splits], m["best_epoch"]])
    ensemble = summary.get("ensemble")
    if ensemble:  # the averaged prediction under the members, then their mean and best
        blank = [None] * (len(header) - len(splits) - 2)
        for label, figures in (("ensemble", ensemble), ("mean", ensemble["members_mean"]),
                               ("best", ensemble["members_best"])):
            rows.append([label, *blank, *[figures[s][metric] for s in splits], None])
    table = format_table(header, rows, title=f"{summary['dataset']}: {len(members)} members")
    return "\n".join([table, *_validation_notes(summary), *_ensemble_notes(summary, splits)])


def _validation_notes(summary: dict) -> list[str]:
    """The summary's "validation" entry (present only without validation rows) as lines."""
    entry = summary.get("validation")
    if not entry:
        return []
    return [f"validation: {entry['note']}", *([f"warning: {entry['warning']}"] if entry.get("warning") else [])]


def _ensemble_notes(summary: dict, splits: list[str]) -> list[str]:
    """One line comparing an ensemble's last split (test, else validation) with its members' mean and best."""
    ensemble = summary.get("ensemble")
    if not ensemble:
        return []
    metric, split = summary["metric"], splits[-1]
    ours, mean, best = ensemble[split], ensemble["members_mean"][split], ensemble["members_best"][split]
    return [f"ensemble of {ensemble['members']} ({ensemble['combine']}): {split} {metric} {ours[metric]:.4g} "
            f"(members mean {mean[metric]:.4g}, best {best[metric]:.4g}), {split} loss {ours['loss']:.4g} "
            f"(members mean {mean['loss']:.4g}, best {best['loss']:.4g})"]


_MEMBER_FIXED = {"member", "train", "val", "test", "generalization_gap", "best_epoch", "stopped_early", "diverged_at_epoch"}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .track import format_table
    from .trained import evaluate_run

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


def cmd_predict(args: argparse.Namespace) -> int:
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
        if args.mc < 1:
            raise ValueError(f"--mc: expected the number of dropout masks T >= 1, got {args.mc}")
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


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets
    from .track import format_table

    rows = [[d["name"], d["n_samples"], d["n_features"], d["task"], d["n_classes"] or "-", d["description"]]
            for d in list_datasets()]
    print(format_table(["name", "samples", "features", "task", "classes", "description"], rows))
    print("user data: data.name csv (data.path, data.target) or npz (data.path with arrays X, y)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
