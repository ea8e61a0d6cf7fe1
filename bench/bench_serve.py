"""Load test of `tamenet serve` on loopback: throughput and p50 / p99 latency at 1, 8 and 32 concurrent clients.

A small model is trained (or `--run DIR` is served), `tamenet serve` starts as a subprocess on
127.0.0.1 at a free port, and for each client count the clients send `--requests` requests in all
(default 400, each of `--rows` rows; `--mc T` makes them Monte-Carlo requests), each level stopping
early after `--seconds` (default 20 s). Bounded in count and time, loopback only. Latency is the
wall time of one request as a client sees it (a kept-alive connection per client thread).

    .venv/bin/python bench/bench_serve.py                   # 1, 8, 32 clients, 400 requests each
    .venv/bin/python bench/bench_serve.py --mc 20 --rows 32 # Monte-Carlo requests

Prints a table and writes the raw figures to bench/results/serve.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_small(out: Path) -> Path:
    import torch

    from tamenet.api import fit

    torch.set_num_threads(1)
    fit({"data": {"name": "digits"}, "model": {"widths": [128, 128], "dropout": 0.2}, "train": {"epochs": 5},
         "track": {"tensorboard": False, "plots": False}}, out=out)
    return out


def start_server(run: Path, port: int, threads: int) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen([sys.executable, "-m", "tamenet", "serve", str(run), "--port", str(port)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
        if server.poll() is not None:
            break
    server.terminate()
    raise SystemExit("the server did not come up within 120 s")


def load(url: str, body: bytes, clients: int, requests: int, seconds: float) -> dict:
    """`requests` POSTs from `clients` threads (stopping after `seconds`): throughput and latency percentiles."""
    import httpx

    latencies: list[float] = []
    failures = [0]
    lock, counter = threading.Lock(), [0]
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while True:
                with lock:
                    if counter[0] >= requests or time.monotonic() > stop_at:
                        return
                    counter[0] += 1
                started = time.perf_counter()
                response = session.post(url, content=body, headers={"content-type": "application/json"})
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    failures[0] += response.status_code != 200

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"clients": clients, "requests": len(latencies), "failed": failures[0], "wall_s": round(wall, 3),
            "throughput_rps": round(len(latencies) / wall, 1), "p50_ms": round(pick(0.50), 2),
            "p99_ms": round(pick(0.99), 2), "mean_ms": round(statistics.fmean(ordered) * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run directory to serve (default: train a small digits MLP)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent client counts (default 1,8,32)")
    parser.add_argument("--requests", type=int, default=400, help="requests per client count (default 400)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit per client count (default 20)")
    parser.add_argument("--rows", type=int, default=8, help="rows per request (default 8)")
    parser.add_argument("--mc", type=int, help="Monte-Carlo dropout masks per request (default: plain requests)")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (default 1)")
    args = parser.parse_args()
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train_small(Path(tmp) / "run")
        from tamenet.trained import load_run

        n_features = int(load_run(run).preprocessing["n_features"])
        rows = np.random.default_rng(0).standard_normal((args.rows, n_features)).round(4).tolist()
        body = json.dumps({"rows": rows, **({"mc": args.mc} if args.mc else {})}).encode()
        port = free_port()
        server = start_server(run, port, args.threads)
        try:
            url = f"http://127.0.0.1:{port}/predict"
            load(url, body, 1, 20, 10)  # warm-up
            results = [load(url, body, int(c), args.requests, args.seconds) for c in args.clients.split(",")]
        finally:
            server.terminate()
            server.wait(timeout=30)
    kind = f"MC T={args.mc}" if args.mc else "plain"
    print(f"tamenet serve on loopback: {args.rows} rows per request ({kind}), one uvicorn worker, "
          f"{args.threads} torch thread(s); the client threads run on the same machine "
          "(shared with other jobs: compare the rows with each other, not with another run)")
    print(f"{'clients':>7} {'requests':>8} {'failed':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['failed']:>6} {r['throughput_rps']:>8} "
              f"{r['p50_ms']:>8} {r['p99_ms']:>8}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "serve.json").write_text(json.dumps({"rows": args.rows, "mc": args.mc, "results": results}, indent=2))


if __name__ == "__main__":
    main()
