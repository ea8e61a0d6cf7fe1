"""`tamenet study-server --storage URL [--host 127.0.0.1] [--port 13000]`: one Optuna study database served to
many search processes over gRPC (`select/study_server.py`; needs the 'cluster' extra)."""

from __future__ import annotations

import argparse
import sys

from .cli import count
from .select.options import STUDY_SERVER_PORT


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `study-server` command."""
    parser = sub.add_parser(
        "study-server", help="serve one Optuna study database to many 'search --trials' processes over gRPC "
                             "(workers: --storage grpc://HOST:PORT; needs the 'cluster' extra)")
    parser.add_argument("--storage", required=True, metavar="URL",
                        help="the database that holds the studies: sqlite:///study.db, "
                             "postgresql://user:password@host/db, ...")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every "
                             "machine that can reach this one: the protocol has no password)")
    parser.add_argument("--port", type=count(1, "a port in [1, 65535]"), default=STUDY_SERVER_PORT,
                        help=f"port to listen on (default {STUDY_SERVER_PORT})")
    parser.add_argument("--threads", type=count(1), default=10,
                        help="requests answered at once (default 10)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (exit 0: the studies are in the database)."""
    from .select.options import check_storage
    from .select.study_server import serve_study_storage

    if args.port > 65535:
        raise ValueError(f"--port: expected a port in [1, 65535], got {args.port}")
    try:
        serve_study_storage(check_storage(args.storage), host=args.host, port=args.port, threads=args.threads)
    except KeyboardInterrupt:
        print("tamenet study-server: stopped", file=sys.stderr)
    return 0
