"""`tamenet export RUN_DIR --format pt|onnx [--member K] [--out FILE]`: a run's model as one self-contained file.

argparse only at import time; torch and the exporters are imported when the command runs.
"""

from __future__ import annotations

import argparse

FORMATS = ("pt", "onnx")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `export` command."""
    parser = sub.add_parser("export", help="write a run's model as a self-contained PyTorch (torch.export) or ONNX "
                                           "file that takes raw feature rows, with a JSON of its metadata beside it")
    parser.add_argument("run_dir", help="a run directory written by 'tamenet train'")
    parser.add_argument("--format", dest="fmt", required=True, choices=FORMATS,
                        help="pt: a torch.export program (.pt2, loads with torch.export.load, no tamenet needed); "
                             "onnx: one ONNX file (needs the 'export' extra)")
    parser.add_argument("--member", type=int, metavar="K",
                        help="the member of a population to export (required when the run has several)")
    parser.add_argument("--out", metavar="FILE",
                        help="the file to write (default RUN_DIR/export/model-m<K>.pt2 or .onnx); "
                             "its metadata goes to FILE.json")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export, then print where the file and its metadata went."""
    from .delivery import export_run

    out, metadata = export_run(args.run_dir, args.fmt, args.out, member=args.member)
    what = metadata["outputs"]
    print(f"member {metadata['member']} exported as {args.fmt}: {out} "
          f"(rows [batch, {metadata['inputs']['shape'][1]}] float32 -> {what['name']} {what['shape']})")
    print(f"metadata: {out.with_name(out.name + '.json')}")
    return 0
