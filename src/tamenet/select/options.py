"""The model-selection defaults and names the command line shows before anything heavy is imported.

They live here, in a module that imports nothing but the standard library, so that `tamenet cv --help`
and a mistaken option answer at once; `cv.py`, `splits.py`, `memory.py` and `trials.py` use them from here.
"""

from __future__ import annotations

from typing import Any

STOP_SHARE = 0.2
"""Share of each fold's training rows held out to decide early stopping (never the scored rows)."""

MAX_SPLITS = 1000
"""Leave-p-out refuses more splits than this by default: each split is one more model to train."""

MEMORY_ENV = "TAMENET_MAX_MEMORY"
"""Environment variable with the memory budget of a selection population (e.g. `2GB`)."""

BATCH = 8
"""Trials asked for (and trained as one population) at a time."""

STUDY_NAME = "tamenet"
"""The study a shared `--storage` holds when no `--study-name` is given."""


def _optuna() -> Any:
    """The optuna module, imported on first use."""
    import optuna

    return optuna


SAMPLERS = {
    "random": lambda seed: _optuna().samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: _optuna().samplers.TPESampler(seed=seed, constant_liar=True),
}
"""Sampler name -> factory(seed)."""

PRUNERS = {
    "median": lambda epochs: _optuna().pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 10)),
    "none": lambda epochs: _optuna().pruners.NopPruner(),
}
"""Pruner name -> factory(epochs): `median` stops a trial whose best score so far is below the median
of the completed trials' scores at the same epoch (after a warm-up of a tenth of the epochs)."""

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql", "journal", "grpc")
"""URLs an Optuna storage accepts: SQLAlchemy's database URLs (with an optional ``+driver``: ``postgresql+psycopg2``);
``journal:///FILE``, Optuna's journal file (safe on a network file system, where sqlite is not); and
``grpc://HOST:PORT``, a `tamenet study-server` (Optuna's gRPC storage proxy) in front of a database."""

HEARTBEAT = 60
"""Seconds between a search process's heartbeats in a database storage (``--heartbeat``): a running trial with
no heartbeat for twice as long belongs to a process that died, and the next process to ask fails it and runs
a trial in its place."""

STUDY_SERVER_PORT = 13000
"""The port `tamenet study-server` listens on by default (Optuna's own default for its gRPC proxy)."""


def check_storage(url: str) -> str:
    """`url` if it reads as an Optuna storage URL (``sqlite:///study.db``, a database server's
    ``postgresql://user:password@host/db``, a journal file's ``journal:///study.log``, a study server's
    ``grpc://host:13000``) whose file's folder exists; else a one-line `ValueError`."""
    import os
    import re

    match = re.fullmatch(r"([a-z]+)(\+\w+)?://(.*)", url)
    if match is None or match.group(1) not in STORAGE_SCHEMES:
        raise ValueError(f"--storage: expected a database URL such as sqlite:///study.db or "
                         f"postgresql://user:password@host/db, a journal file journal:///study.log, or a study "
                         f"server's grpc://HOST:PORT ({', '.join(STORAGE_SCHEMES)}), got {url!r}")
    if match.group(1) == "grpc":
        grpc_address(url)
    if match.group(1) in ("sqlite", "journal"):
        kind = match.group(1)
        if not match.group(3).startswith("/") or match.group(3) in ("/", "/:memory:"):
            raise ValueError(f"--storage: a shared {kind} study is a file, {kind}:///FILE (relative) or "
                             f"{kind}:////ABSOLUTE/FILE, got {url!r}")
        folder = os.path.dirname(match.group(3)[1:]) or "."
        if not os.path.isdir(folder):
            raise ValueError(f"--storage {url}: the folder {folder!r} of the study file does not exist")
    return url


def grpc_address(url: str) -> tuple[str, int]:
    """(host, port) of a study server's ``grpc://HOST:PORT`` (the port 13000 when left out); else a `ValueError`."""
    import re

    match = re.fullmatch(r"grpc://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)(?::(\d+))?/?", url)
    port = int(match.group(2)) if match is not None and match.group(2) else STUDY_SERVER_PORT
    if match is None or not 0 < port < 65536:
        raise ValueError(f"--storage: a study server is grpc://HOST:PORT (a port in [1, 65535]), got {url!r}")
    return match.group(1).strip("[]"), port


def keeps_heartbeats(url: str) -> bool:
    """Whether Optuna keeps trials' heartbeats in the storage of `url`: its databases (`RDBStorage`) do; its
    journal files and its gRPC proxy do not."""
    return not url.startswith(("journal:", "grpc:"))


def check_spread(*, processes: int, trials: bool, storage: str | None, study_name: str | None,
                 halving: bool, nested: bool, heartbeat: int | None = None) -> None:
    """What a search or cross-validation over `processes` processes, or with a shared Optuna `storage`, cannot
    do, refused in one line before anything starts (the command line calls it before torch loads)."""
    if study_name is not None and storage is None:
        raise ValueError("--study-name names a study in a shared --storage; expected --storage too")
    if heartbeat is not None:
        if storage is None:
            raise ValueError("--heartbeat marks this process's trials alive in a shared --storage; expected "
                             "--storage too")
        if heartbeat < 0:
            raise ValueError(f"--heartbeat: expected whole seconds, 0 for none, got {heartbeat}")
        if heartbeat and not keeps_heartbeats(storage):
            raise ValueError(f"--heartbeat: Optuna keeps heartbeats in a database storage (sqlite:///, "
                             f"postgresql://, ...), not in {storage.split(':', 1)[0]}:// storage; expected "
                             f"--heartbeat 0 or a database URL")
    if storage is not None:
        if not trials:
            raise ValueError("--storage shares the Optuna study of --trials; a --grid is spread over processes "
                             "with --nproc")
        if nested:
            raise ValueError("--nested runs one search per outer fold, which one shared --storage study cannot "
                             "hold; expected --nested or --storage")
        check_storage(storage)
    if processes > 1:
        if halving:
            raise ValueError("--halving with --nproc: successive halving ranks the candidates of one population, "
                             "and each process would rank only its own chunk; expected one of them")
        if trials and storage is None:
            raise ValueError("--trials with --nproc needs --storage (e.g. sqlite:///study.db): the processes "
                             "share the trials through Optuna's storage")
