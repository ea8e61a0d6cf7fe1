"""`tamenet train`: one recipe, one population, one run directory.

The recipe is read and checked (`recipe_files.parse_recipe`) and the output folder checked before
torch is imported, so a mistake is reported at once.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from .cli import EXIT_DIVERGED, EXIT_INTERRUPTED
from .cli_report import add_no_report, after_job

DEVICE_HELP = "where to train (sets train.device; default: the recipe's, auto = the GPU when PyTorch sees one)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train the model a recipe describes (the default job without one)",
                           description="Train the population a recipe describes and write its run directory.")
    train.add_argument("recipe", nargs="?", help="a YAML recipe file (default: the default job, tamenet.DEFAULT_RECIPE)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. --set train.lr=0.01 (repeatable; values read as YAML)")
    train.add_argument("--out", metavar="DIR",
                       help="run directory to write (default runs/<recipe name, else data-model>-<time>)")
    train.add_argument("--resume", metavar="DIR",
                       help="continue the run in DIR from its last completed epoch (last.pt); --set may extend it, "
                            "e.g. train.epochs")
    train.add_argument("--keep-last", action="store_true",
                       help="keep last.pt (the resume state) when the run finishes; by default it is removed then, "
                            "as a finished run needs only model.pt")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    train.add_argument("--ensemble", type=int, metavar="M",  # its range is checked by fit (one message)
                       help="train seeds base..base+M-1 as one population and report their averaged prediction")
    train.add_argument("--nproc", type=int, metavar="N",
                       help="data-parallel training on N processes of this machine (one per CPU core or GPU), "
                            "launched through torchrun: each trains on 1/N of every batch (docs/distributed.md)")
    train.add_argument("--dist-timeout", type=float, default=None, metavar="S",
                       help="under torchrun: seconds a process waits for the others (the rendezvous, then each "
                            "gradient exchange) before the job ends with a message (default 60)")
    add_no_report(train)


def default_out(stem: str) -> Path:
    """runs/<stem>-<time>, with -1, -2, ... when that exists."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stem}-{stamp}"
    path, n = base, 1
    while path.exists():
        path, n = Path(f"{base}-{n}"), n + 1
    return path


def check_out(path: Path, *, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be one before any work: an existing file, a path under a file,
    a folder that is not empty, or a place that cannot be written (read-only, no permission)."""
    import os

    from .track.rundir import check_run_folder

    check_run_folder(path, what=f"{flag} {path}")
    if path.is_dir() and any(path.iterdir()):
        raise FileExistsError(f"{flag} {path}: the folder exists and is not empty; pick a new folder, or "
                              "continue its run with --resume")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path}: cannot write in {existing} (read-only or no permission)")
    return path


def device_overrides(args: argparse.Namespace) -> list[str]:
    return [*args.overrides, *([f"train.device={args.device}"] if getattr(args, "device", None) else [])]


def run(args: argparse.Namespace) -> int:
    from .dist.group import ranks_from_env
    from .recipe_files import parse_recipe, run_name

    overrides = device_overrides(args)
    ranks = ranks_from_env()  # under torchrun: this process's rank; None in a one-process job
    if getattr(args, "dist_timeout", None) is not None and not args.dist_timeout > 0:
        raise ValueError(f"--dist-timeout: expected a number of seconds > 0, got {args.dist_timeout:g}")
    if args.resume:  # the run's own recipe, with --set overrides such as train.epochs=300
        if args.recipe or args.out or args.ensemble:
            given = [f for f, v in (("a recipe", args.recipe), ("--out", args.out), ("--ensemble", args.ensemble)) if v]
            raise ValueError(f"--resume DIR continues that run with its own recipe and folder; expected only --set "
                             f"beside it, got also {', '.join(given)}")
        recipe, out = None, Path(args.resume)
        light = None
        if ranks is None:  # under torchrun the run is being written by rank 0 of this very job
            _check_not_running(out)
    else:
        light = parse_recipe(args.recipe, overrides)  # keys, types, ranges: before torch is imported
        recipe = args.recipe
        if ranks is not None and not ranks.is_main:
            out = Path(args.out) if args.out else None  # rank 0 checks and writes the folder
        else:
            out = check_out(Path(args.out)) if args.out else default_out(run_name(light))
    if getattr(args, "nproc", None) is not None:
        from .cli_train_nproc import launch

        return launch(args, out, light)
    if ranks is not None:
        from .cli_train_nproc import join_job

        join_job(ranks, args, light)

    from .allocator import keep_freed_memory
    from .api import diverged_message, fit
    from .devices import check_training
    from .progress import make_progress

    if not args.resume:
        check_training(light.train)  # cuda without a GPU, fp16 on the CPU: refused before anything is written
    keep_freed_memory()  # large populations reuse their freed gradient blocks (see allocator.py)
    progress = make_progress(sys.stdout)
    with progress:
        result = fit(recipe, out=out, callbacks=[progress] if ranks is None or ranks.is_main else [],
                     resume=args.resume, overrides=overrides, ensemble=args.ensemble, keep_last=args.keep_last)
    if ranks is not None:
        from .dist.group import leave

        leave()
        if not ranks.is_main:  # rank 0 prints and reports
            return 0
    print(summary_text(result.summary))
    print(f"run directory: {result.run_dir}")
    after_job(args, result.run_dir)
    summary = result.summary
    if summary.get("interrupted"):
        from .track.lock import run_state

        note = run_state(result.run_dir).get("message", "interrupted")
        print(f"{note}: the run directory holds the best weights so far; continue with "
              f"tamenet train --resume {result.run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    diverged = [m.get("diverged_at_epoch") for m in summary.get("per_member", [summary])]
    if all(d is not None for d in diverged):
        print(f"tamenet train: {diverged_message(diverged)}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def _check_not_running(folder: Path) -> None:
    """Refuse --resume on a folder whose run is still being written (before loading anything heavy)."""
    from .track.lock import LOCK_NAME, RunLockedError, holder_alive

    lock = folder / LOCK_NAME
    if not lock.is_file():
        return
    import json

    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    import os

    if isinstance(holder, dict) and holder_alive(holder) and holder.get("pid") != os.getpid():
        raise RunLockedError(f"--resume {folder}: its run is still being written by process {holder.get('pid')} "
                             f"(since {holder.get('started')}); wait for it to end or stop it first")


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
