"""Throwaway database servers for tests and benchmarks: a PostgreSQL cluster in a temporary folder.

Used by tests/test_study_storage.py and bench/bench_storage.py. PostgreSQL's server programs come from
Debian's `postgresql` package (`.ci/run` installs it when missing)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at the moment of asking."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_programs() -> str | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or None."""
    found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1:]), None)
    return os.path.dirname(found) if found else None


@contextlib.contextmanager
def throwaway_postgres(programs: str) -> Iterator[str]:
    """A fresh PostgreSQL cluster in a temporary folder on a free port of 127.0.0.1, trust authentication, no
    fsync: its SQLAlchemy URL (``postgresql+psycopg2://tamenet@127.0.0.1:PORT/postgres``) while the block runs,
    then stopped and removed. As root the server runs as the `postgres` user (PostgreSQL refuses root)."""
    folder = tempfile.mkdtemp(prefix="tamenet-pg-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, user="postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), free_port()

    def pg(*argv: str) -> None:
        subprocess.run([*run_as, *argv], check=True, capture_output=True, text=True, timeout=120)

    try:
        pg(f"{programs}/initdb", "-D", data, "-U", "tamenet", "-A", "trust", "--no-sync")
        pg(f"{programs}/pg_ctl", "-D", data, "-w", "-l", os.path.join(folder, "log"), "-o",
           f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        try:
            yield f"postgresql+psycopg2://tamenet@127.0.0.1:{port}/postgres"
        finally:
            pg(f"{programs}/pg_ctl", "-D", data, "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
