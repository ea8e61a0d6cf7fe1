"""`tamenet cv` and `tamenet search`: folds and grid points trained as members of one population."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .cli import LazyChoices, count, share
from .cli_train import DEVICE_HELP, check_out, default_out, device_overrides
from .cli_report import add_no_report, after_job
from .dist.group import DEFAULT_TIMEOUT_S, join, leave, ranks_from_env
from .dist.launch import DistributedError, check_nproc, gpu_count, relaunch
from .select.options import BATCH, HEARTBEAT, MAX_SPLITS, MEMORY_ENV, PRUNERS, SAMPLERS, STOP_SHARE, STUDY_NAME, check_spread


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, text in (("cv", "cross-validate a recipe, all folds trained as one population"),
                       ("search", "grid or Optuna search with cross-validation; the best candidate refit and tested once")):
        sel = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sel.add_argument("recipe", nargs="?", help="a YAML recipe file (default: the default job)")
        if name == "search":
            how = sel.add_mutually_exclusive_group(required=True)
            how.add_argument("--grid", action="append", metavar="KEY=VALUES",
                             help="values: 0,0.2,0.5 or a log range 1e-6:1e6:13 or a YAML list (repeatable)")
            how.add_argument("--trials", type=count(1), metavar="N", help="Optuna trials over the --space")
            sel.add_argument("--space", action="append", default=[], metavar="KEY=RANGE",
                             help="with --trials: LOW:HIGH, LOW:HIGH:log, or choices A,B,C / a YAML list (repeatable)")
            sel.add_argument("--sampler", default="tpe", choices=list(SAMPLERS), help="Optuna sampler (default tpe)")
            sel.add_argument("--pruner", default="median", choices=list(PRUNERS),
                             help="stops poor trials early (default median)")
            sel.add_argument("--batch", type=count(1), default=BATCH, metavar="B",
                             help=f"trials trained together as one population (default {BATCH})")
            sel.add_argument("--nested", type=count(2), metavar="K_OUTER",
                             help="nested cross-validation: an unbiased estimate of the whole search over K_OUTER outer folds")
            sel.add_argument("--no-refit", action="store_true", help="skip refitting the best candidate")
            sel.add_argument("--storage", metavar="URL",
                             help="with --trials: an Optuna storage shared by processes and machines, e.g. "
                                  "sqlite:///study.db or postgresql://user:password@host/db; --trials N is then "
                                  "the study's total (docs/scaling.md)")
            sel.add_argument("--study-name", metavar="NAME",
                             help=f"the study in --storage (default {STUDY_NAME!r}; created by the first process)")
            sel.add_argument("--heartbeat", type=count(0, "whole seconds, 0 for none"), metavar="SECONDS",
                             help=f"with a database --storage: this process marks its running trials alive every "
                                  f"SECONDS (default {HEARTBEAT}; 0: never); a trial silent for twice as long "
                                  f"belongs to a process that died and is run again by the others")
        sel.add_argument("--scheme", default="kfold", choices=LazyChoices("select.splits", "SCHEMES"), metavar="SCHEME",
                         help="validation scheme: %(choices)s (default kfold; stratified keeps class shares)")
        sel.add_argument("--folds", type=count(1), default=10, metavar="K",
                         help="folds, or splits for repeated/bootstrap (default 10)")
        sel.add_argument("--p", type=count(1), default=2, help="rows left out per split for lpo (default 2)")
        sel.add_argument("--max-splits", type=count(1), default=MAX_SPLITS, metavar="N",
                         help=f"refuse lpo/loo with more splits than this (default {MAX_SPLITS})")
        sel.add_argument("--stop-share", type=share, default=STOP_SHARE, metavar="SHARE",
                         help=f"share in [0, 1) of each fold's training rows that decides early stopping "
                              f"(default {STOP_SHARE}; 0: no stopping set)")
        sel.add_argument("--halving", type=count(2), nargs="?", const=3, metavar="ETA",
                         help="successive halving: keep the best 1/ETA of the candidates at each rung (default ETA 3)")
        sel.add_argument("--max-memory", metavar="SIZE",
                         help=f"memory budget of a population, e.g. 2GB (default ${MEMORY_ENV} or half the RAM); "
                              "larger populations train in chunks")
        sel.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recipe value, e.g. --set train.epochs=30 (repeatable)")
        sel.add_argument("--device", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
        sel.add_argument("--nproc", type=count(1), metavar="N",
                         help="train the population's chunks on N processes of this machine (torchrun; one per CPU "
                              "core or GPU); across machines run torchrun --nnodes yourself (docs/scaling.md)")
        sel.add_argument("--side-by-side", type=count(1), metavar="N",
                         help="on the CPU, train the population as up to N parts side by side, one thread each "
                              "(default: one per torch thread, at least 16 members a part; 1: one population); "
                              "the numbers do not change")
        sel.add_argument("--join-timeout", type=seconds, default=DEFAULT_TIMEOUT_S, metavar="S",
                         help=f"seconds a process of a distributed job waits for the others to join "
                              f"(default {DEFAULT_TIMEOUT_S:g})")
        sel.add_argument("--out", metavar="DIR", help="run directory to write (default runs/<name>-<command>-<time>)")
        add_no_report(sel)


def check_side_by_side(parts: int) -> int:
    """`--side-by-side N` if this machine has N cores for it (each part a thread of one core), else a one-line
    ValueError: more threads than cores only time-slice."""
    from .dist.launch import available_cores

    cores = available_cores()
    if parts > cores:
        raise ValueError(f"--side-by-side {parts}: one thread per CPU core, and this machine has {cores} core(s) "
                         f"available; expected --side-by-side 1 to {cores}")
    return parts


def seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _command_line(args: argparse.Namespace) -> list[str]:
    """This command's own arguments, which `--nproc` runs again under torchrun (the processes it starts)."""
    import sys

    argv = sys.argv[1:]
    if not argv or argv[0] != args.command:
        raise DistributedError(f"--nproc starts `tamenet {args.command} ...` again from its command line; called "
                               f"from Python, expected the job started under torchrun instead (docs/scaling.md)")
    return argv


def run(args: argparse.Namespace) -> int:
    from .recipe_files import parse_recipe, run_name

    overrides = device_overrides(args)
    light = parse_recipe(args.recipe, overrides)  # keys, types, ranges: before torch is imported
    ranks = ranks_from_env()
    trials = getattr(args, "trials", None)
    check_spread(processes=max(args.nproc or 1, ranks.world_size if ranks else 1), trials=trials is not None,
                 storage=getattr(args, "storage", None), study_name=getattr(args, "study_name", None),
                 heartbeat=getattr(args, "heartbeat", None),
                 halving=bool(args.halving), nested=getattr(args, "nested", None) is not None)
    if args.side_by_side is not None:
        check_side_by_side(args.side_by_side)
    main = ranks is None or ranks.is_main
    out = None
    if main:
        out = check_out(Path(args.out)) if args.out else default_out(run_name(light, args.command))
    if ranks is None and (args.nproc or 1) > 1:  # this machine's processes, under torchrun
        cuda = light.train.device == "cuda"
        check_nproc(args.nproc, device="cuda" if cuda else "cpu", gpus=gpu_count() if cuda else 0)
        argv = _command_line(args)
        return relaunch(args.nproc, argv if args.out else [*argv, "--out", str(out)])

    from .allocator import keep_freed_memory
    from .devices import check_training
    from .recipes import load_recipe
    from .select.run import cross_validate, search
    from .select.memory import format_size
    from .track import format_table

    keep_freed_memory()
    recipe = load_recipe(args.recipe, overrides)
    check_training(recipe.train)  # cuda without a GPU, fp16 on the CPU: refused before anything is written
    spread = _join(ranks, recipe.train.device, args.join_timeout) if ranks is not None else None
    options = dict(scheme=args.scheme, folds=args.folds, p=args.p, max_splits=args.max_splits,
                   stop_share=args.stop_share, halving=args.halving, out=out, max_memory=args.max_memory, spread=spread,
                   side_by_side=args.side_by_side)
    try:
        if args.command == "cv":
            result = cross_validate(recipe, **options)
        else:
            result = search(recipe, grid=args.grid, trials=args.trials, space=args.space, sampler=args.sampler,
                            pruner=args.pruner, batch=args.batch, nested=args.nested, refit=not args.no_refit,
                            storage=args.storage, study_name=args.study_name, heartbeat=args.heartbeat,
                            **options)
    finally:
        if spread is not None:
            leave()
    if not main:
        return 0  # the main rank prints and writes
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
    if spread is not None:
        how = "each ran trials of the shared study" if trials else "the population's chunks dealt round robin"
        print(f"spread over {spread.world_size} processes: {how}; rank 0 chose and wrote")
    memory = result["memory"]
    chunks = memory["chunks"] if isinstance(memory["chunks"], list) else [memory["chunks"]]
    needed = f"about {format_size(memory['needed'])} needed" if memory["needed"] else "not estimated (one member)"
    if not chunks:  # a process that found the shared study already holding its --trials
        print("memory: no population trained here: other processes ran every trial of the study")
    elif max(chunks) > 1:
        print(f"memory: {needed}, budget {format_size(memory['budget'])}: "
              f"trained in chunks of up to {memory['chunk_size']} members ({sum(chunks)} chunks)")
    else:
        print(f"memory: {needed}, budget {format_size(memory['budget'])}: one chunk of {memory['chunk_size']} members")
    if memory.get("side_by_side", 1) > 1:
        print(f"side by side: each chunk trained as {memory['side_by_side']} parts at once, one CPU thread each "
              f"(--side-by-side 1: one population)")
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
    after_job(args, result.get("run_dir"))
    return 0


def _join(ranks, device: str, timeout_s: float):
    """Join the job (its rendezvous within `timeout_s`, else one line) and the search's exchange group."""
    from .select.ranks import Spread

    if device.startswith("cuda") or device == "auto":  # one GPU per process: "cuda" is this rank's device
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(ranks.local_rank % torch.cuda.device_count())
    join(ranks, "cpu", timeout_s)  # scores travel between ranks as Python objects: gloo, on any device
    return Spread.join(ranks.rank, ranks.world_size)
