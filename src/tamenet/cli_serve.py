"""`tamenet serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--workers N] [--token T]`: predictions over HTTP.

argparse only at import time; torch, FastAPI and uvicorn are imported when the command runs. The run's
`model.pt` is loaded (and checked: format version, weights) before the server starts, so a run
directory that cannot serve is refused with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `serve` command."""
    from .serve.auth import TOKEN_ENV

    parser = sub.add_parser("serve", help="serve a run's model over HTTP: POST /predict, GET /health, GET /metadata "
                                          "(needs the 'serve' extra)")
    parser.add_argument("run_dir", help="a run directory written by 'tamenet train'")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, this machine only; another address without a "
                             "token prints a warning)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (default 1); each loads its own copy of the model")
    parser.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' on every path but /health "
                                        f"(default ${TOKEN_ENV} when set)")
    parser.add_argument("--max-body", type=int, default=None, metavar="BYTES",
                        help="largest request body accepted (default 16 MiB); larger ones get 413")
    parser.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                        help="rows the model predicts at once; larger requests run chunk by chunk (default 2048)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the run and the options, then serve until stopped (Ctrl-C)."""
    import os

    from .extras import require
    from .serve.app import CHUNK_ENV, CHUNK_ROWS, MAX_BODY, MAX_BODY_ENV, RUN_ENV, create_app
    from .serve.auth import TOKEN_ENV, is_loopback, resolve_token
    from .trained import load_run

    if not 0 < args.port < 65536:
        raise ValueError(f"--port: expected a port in [1, 65535], got {args.port}")
    if args.workers < 1:
        raise ValueError(f"--workers: expected at least 1 worker process, got {args.workers}")
    for name in ("max_body", "chunk_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
    require("fastapi", extra="serve", feature="tamenet serve")
    uvicorn = require("uvicorn", extra="serve", feature="tamenet serve")
    token = resolve_token(args.token)
    trained = load_run(args.run_dir)  # refuses (one line, exit 2) a model.pt that fails to load
    max_body = args.max_body or MAX_BODY
    chunk_rows = args.chunk_rows or CHUNK_ROWS
    if not is_loopback(args.host) and token is None:
        print(f"tamenet serve: warning: binding to {args.host}, reachable from other machines, without a token; "
              f"anyone who reaches it can use the model (set --token or ${TOKEN_ENV})", file=sys.stderr)
    print(f"tamenet serve: {args.run_dir} ({trained.task}, {trained.model.members} member(s)) on "
          f"http://{args.host}:{args.port} with {args.workers} worker(s)"
          + ("; a bearer token is required" if token else ""), file=sys.stderr)
    if args.workers == 1:
        app = create_app(trained, token=token, max_body=max_body, chunk_rows=chunk_rows)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    os.environ.update({RUN_ENV: str(args.run_dir), MAX_BODY_ENV: str(max_body), CHUNK_ENV: str(chunk_rows)})
    if token is not None:
        os.environ[TOKEN_ENV] = token
    uvicorn.run("tamenet.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning")
    return 0
