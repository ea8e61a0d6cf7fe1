"""`tamenet study-server`: Optuna's gRPC storage proxy in front of one study database (SPEC I2).

Thousands of search processes each holding a connection to one database server exhaust its connections;
Optuna's answer (its own distributed mode, since Optuna 4.2) is one proxy process that holds the database and
answers every worker over gRPC. The workers name it with ``--storage grpc://HOST:PORT``; the study lives in
the database behind it, so a proxy that stops loses nothing and a new one on the same database goes on.
"""

from __future__ import annotations

import socket
import sys
import warnings

from ..extras import require
from .trials import StorageError, open_storage, redact


def check_port_free(host: str, port: int) -> None:
    """A one-line `StorageError` when `host:port` cannot be bound (taken, or not an address of this machine).

    gRPC binds with SO_REUSEPORT, so a second server on a taken port would share it with the first instead of
    failing; a plain socket, bound and closed first, sees the port as taken."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        raise StorageError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err}); "
                           f"expected a free port of an address of this machine") from None


def serve_study_storage(url: str, *, host: str, port: int, threads: int = 10) -> None:
    """Serve the Optuna storage of the database `url` at `host:port` until interrupted.

    The port is checked first (a taken one creates no database), then the database opened (its tables
    created), so a URL that cannot be opened is refused with one line before anything listens."""
    if url.startswith(("grpc://", "journal://")):
        raise StorageError(f"--storage {url}: the study server needs the database itself (sqlite:///FILE, "
                           f"postgresql://...), not another study server or a journal file (Optuna's proxy "
                           f"does not serve journals)")
    require("grpc", extra="cluster", feature="tamenet study-server")
    check_port_free(host, port)
    open_storage(url).engine.dispose()  # a URL that cannot be opened: one line, before anything listens
    from concurrent.futures import ThreadPoolExecutor

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"tamenet study-server: the Optuna storage {redact(url)} at grpc://{host}:{port} "
          f"(workers: --storage grpc://{host}:{port}; Ctrl-C stops)", file=sys.stderr, flush=True)
    with warnings.catch_warnings():  # Optuna marks its gRPC proxy experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # get_storage, not RDBStorage: the proxy answers from Optuna's cache of finished trials
        storage = optuna.storages.get_storage(url)
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port,
                                              thread_pool=ThreadPoolExecutor(threads))
