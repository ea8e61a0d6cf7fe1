"""`tamenet quantize RUN_DIR --bits B [--per-channel] [--symmetric] [--activations] [--out DIR] [--format F]`.

Post-training quantization of a trained run into a new run directory (`tamenet.compress.ptq`), with the
accuracy before and after, the size of a member and the latency; `--format int8|fp16|bf16|all` also writes
member K in deployment formats (`tamenet.compress.deploy`: torchao int8 weights, fp16, bf16) with a table of
parameters, bytes on disk, latency on one thread and accuracy. argparse only at import time.
"""

from __future__ import annotations

import argparse

MIN_BITS, MAX_BITS = 2, 16
OBSERVERS = ("minmax", "moving_average")  # torch-free copy of compress.activations.OBSERVERS (tests/test_names.py)
FORMATS = ("int8", "fp16", "bf16", "all")


def bit_width(text: str) -> int:
    """An argparse type: a whole bit width in [2, 16]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole bit width in [{MIN_BITS}, {MAX_BITS}], got {text!r}") from None
    if not MIN_BITS <= value <= MAX_BITS:
        raise argparse.ArgumentTypeError(f"expected a bit width in [{MIN_BITS}, {MAX_BITS}], got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `quantize` command."""
    parser = sub.add_parser("quantize", help="post-training quantization of a trained run into a new run directory "
                                             "(evaluate, predict, export read it), and deployment formats "
                                             "(int8 torchao, fp16, bf16) with their size, latency and accuracy")
    parser.add_argument("run_dir", help="a run directory written by 'tamenet train' (only read)")
    parser.add_argument("--bits", type=bit_width, default=8, help="bit width of the integer grid, 2-16 (default 8)")
    parser.add_argument("--per-channel", action="store_true",
                        help="one range per output channel of each weight (default: one per tensor)")
    parser.add_argument("--symmetric", action="store_true",
                        help="symmetric grid, zero point 0, [-(2^(b-1)-1), 2^(b-1)-1] (default: asymmetric [0, 2^b-1])")
    parser.add_argument("--activations", action="store_true",
                        help="also quantize each layer's input, its range calibrated on the run's training rows")
    parser.add_argument("--observer", choices=OBSERVERS, default="minmax",
                        help="how --activations calibrates a range: minmax (extremes seen) or moving_average")
    parser.add_argument("--out", metavar="DIR", help="the new run directory (default RUN_DIR-q<bits>, "
                                                     "RUN_DIR-q<bits>a with --activations); must not exist")
    parser.add_argument("--format", dest="fmt", choices=FORMATS,
                        help="also write member K in deployment formats under DIR/deploy/ and print their table "
                             "against fp32 (int8 needs the 'compress' extra: torchao)")
    parser.add_argument("--member", type=int, metavar="K",
                        help="the member that --format writes (required when the run is a population)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def run(args: argparse.Namespace) -> int:
    """Quantize, then print the before/after table, size and latency (and the deployment table)."""
    from pathlib import Path

    from .cli_predict import check_run_dir
    from .compress.ptq import Scheme, check_destination, default_out, quantize_run
    from .trained import load_run

    source = check_run_dir(args.run_dir, command="quantize")
    scheme = Scheme(args.bits, symmetric=args.symmetric, per_channel=args.per_channel,
                    activations=args.activations, observer=args.observer)
    trained = load_run(source)  # a folder without a tamenet model.pt is refused here, before anything is written
    check_destination(source, Path(args.out) if args.out else default_out(source, scheme))
    member = None
    if args.fmt is not None:
        from .compress.deploy import import_torchao
        from .delivery import choose_member

        member = choose_member(trained, args.member)
        if args.fmt in ("int8", "all"):
            import_torchao()  # the missing extra is said before the run is written
    result = quantize_run(source, scheme, args.out)
    print(_before_after(result))
    size, latency = result.size, result.latency
    print(f"one member: {size['float32']:,} bytes in float32, {size['quantized']:,} at {scheme.bits} bits "
          f"(weights packed, scales and zero points added): {size['float32'] / size['quantized']:.1f}x smaller")
    print(f"latency per batch of {latency['rows']} rows: float {latency['float32'] * 1e3:.2f} ms, fake-quantized "
          f"{latency['quantized'] * 1e3:.2f} ms (fake quantization simulates the integer grid in float: it measures "
          "accuracy, not speed; see --format for real int8)")
    print(f"quantized run: {result.path} ({scheme.describe()}, from {source})")
    if args.fmt is not None:
        _deploy(trained, member, args.fmt, result.path)
    return 0


def _before_after(result) -> str:
    from .track import format_table

    metric = result.before["metric"]
    rows = []
    for split in ("val", "test"):
        if split in result.before:
            for m, (old, new) in enumerate(zip(result.before[split][metric], result.after[split][metric])):
                rows.append([split, m, old, new, new - old])
    return format_table(["split", "member", f"{metric} float", f"{metric} quantized", "change"], rows,
                        title=f"{result.source} -> {result.path}")


def _deploy(trained, member: int, fmt: str, run_path) -> None:
    """Member `member` of the float run in the asked formats: files under run_path/deploy/, and the table."""
    import torch

    from .compress.deploy import deploy_model, deploy_table, formats_asked, slower_note
    from .data import prepare
    from .models.export import export_member
    from .track import atomic_torch_save, atomic_write_json, format_table

    if trained.task != "classification":
        raise ValueError("--format: the deployment table scores classification runs; this run is a regression")
    data = prepare(trained.recipe.data)
    X, y = (data.X_test, data.y_test) if len(data.X_test) else (data.X_val, data.y_val)
    plain = export_member(trained.model, member)  # standardized rows in, as the population takes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = deploy_table(plain, X, y, formats=formats_asked(fmt))
    finally:
        torch.set_num_threads(threads)
    folder = run_path / "deploy"
    folder.mkdir(exist_ok=True)
    for row in rows:
        if row["format"] != "fp32":
            atomic_torch_save(folder / f"model-m{member}-{row['format']}.pt", deploy_model(plain, row["format"]).state_dict())
    atomic_write_json(folder / "deploy.json", {"member": member, "rows": len(X), "threads": 1, "table": rows})
    print(format_table(["format", "parameters", "bytes", "ms/batch", "vs fp32", "accuracy"],
                       [[r["format"], r["parameters"], r["bytes"], r["seconds"] * 1e3, r["vs_fp32"], r["metric"]]
                        for r in rows], title=f"member {member} in deployment formats (1 thread, {len(X)} rows)"))
    print(slower_note(rows))
    print(f"deployment files: {folder} (state dicts; tamenet.compress.deploy.load_deployed reads them back)")
