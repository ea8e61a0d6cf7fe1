"""The cost of a shared Optuna study per trial, by storage: the numbers that decide which `--storage` to use.

A tamenet trial talks to the storage as `select/trials.py` does: one ask (the trial's values drawn by a
sampler seeded with its number, TPE reading the study's trials), one `report` per epoch, the row kept as a
user attribute, one tell. This script times exactly that, without training, for P worker processes at once
(1 and 4), each running T trials of E epochs on one fresh study, on each storage, one after another in this
one run:

- `memory` (Optuna's in-memory storage: one process only, the floor);
- `sqlite` (a file), `journal` (Optuna's journal file, the shared-file-system choice);
- `postgresql` (a throwaway PostgreSQL server on this machine, tests/servers.py), when its programs exist;
- `grpc+sqlite`, `grpc+postgresql` (a `tamenet study-server` in front of each).

It prints, per storage and worker count, the study's trials per second and the storage's milliseconds per
trial seen by one worker, and writes bench/results/storage.json. A trial of the 130-fit search takes seconds
to minutes to train, so a storage matters only where its milliseconds per trial times the trials approach the
training time: the table says at what count of workers that happens. It asserts nothing about speed.

    .venv/bin/python bench/bench_storage.py                 # 40 trials x 30 epochs per worker
    .venv/bin/python bench/bench_storage.py --quick         # 8 trials x 5 epochs: a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway PostgreSQL server of the tests
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def worker(url: str, name: str, trials: int, epochs: int, seed: int, start, out) -> None:
    """One worker process: `trials` trials of the study `name`, each as tamenet runs it; its wall time."""
    import optuna

    from tamenet.select.options import SAMPLERS
    from tamenet.select.trials import ask_numbered, open_storage, parse_dimension

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url) if url != "memory" else optuna.storages.InMemoryStorage()
    dims = [parse_dimension("train.lr=0.001:1:log"), parse_dimension("penalty.l2=1e-6:1:log")]
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize",
                                sampler=SAMPLERS["tpe"](seed))
    start.wait()
    began = time.perf_counter()
    for _ in range(trials):
        trial, values = ask_numbered(study, dims, lambda n: SAMPLERS["tpe"](seed + n))
        score = 1.0 / (1.0 + abs(values["train.lr"] - 0.1))
        for epoch in range(epochs):
            trial.report(score * (epoch + 1) / epochs, epoch)
        trial.set_user_attr("tamenet_row", {"trial": trial.number, **values, "cv_accuracy_mean": score})
        study.tell(trial, score)
    out.put(time.perf_counter() - began)


def measure(url: str, name: str, workers: int, trials: int, epochs: int) -> dict:
    """`workers` processes on one fresh study at once: trials per second of the study, ms per trial per worker."""
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    procs = [context.Process(target=worker, args=(url, name, trials, epochs, 11 * (w + 1), start, out))
             for w in range(workers)]
    for p in procs:
        p.start()
    time.sleep(2.0 + workers)  # every worker has imported Optuna and opened the study
    began = time.perf_counter()
    start.set()
    times = [out.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - began
    for p in procs:
        p.join()
    return {"workers": workers, "trials": workers * trials, "wall_s": round(wall, 3),
            "trials_per_s": round(workers * trials / wall, 2),
            "ms_per_trial_per_worker": round(1000 * max(times) / trials, 2)}


def study_server(database: str, folder: str):
    """A `tamenet study-server` over `database` on a free port: (its process, its grpc:// URL)."""
    from servers import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "tamenet", "study-server", "--storage", database, "--port",
                             str(port)], cwd=folder, env=env, stderr=subprocess.DEVNULL)
    return proc, f"grpc://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 trials x 5 epochs per worker")
    parser.add_argument("--workers", default="1,4", help="worker counts (default 1,4)")
    args = parser.parse_args()
    trials, epochs = (8, 5) if args.quick else (40, 30)
    counts = [int(c) for c in args.workers.split(",")]
    from contextlib import ExitStack

    from servers import postgres_programs, throwaway_postgres

    rows = []
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        programs = postgres_programs()
        postgres = stack.enter_context(throwaway_postgres(programs)) if programs else None
        storages = {"memory": lambda k: "memory",
                    "sqlite": lambda k: f"sqlite:///{folder}/s{k}.db",
                    "journal": lambda k: f"journal:///{folder}/j{k}.log"}
        if postgres:
            storages["postgresql"] = lambda k: postgres
        for key in list(storages):
            if key in ("sqlite", "postgresql"):
                storages[f"grpc+{key}"] = storages[key]
        for key, make in storages.items():
            for count in counts:
                if key == "memory" and count > 1:
                    continue  # one process's memory: nothing to share
                url, name, server = make(count), f"{key}-{count}", None
                if key.startswith("grpc+"):
                    server, url = study_server(url, folder)
                try:
                    row = {"storage": key, **measure(url, name, count, trials, epochs)}
                finally:
                    if server is not None:
                        server.terminate()
                        server.wait(timeout=30)
                rows.append(row)
                print(f"{key:16s} {count} worker(s): {row['trials_per_s']:8.1f} trials/s, "
                      f"{row['ms_per_trial_per_worker']:7.1f} ms per trial per worker", flush=True)
    result = {"trials_per_worker": trials, "epochs_reported": epochs, "threads_per_process": 1,
              "cpu_count": os.cpu_count(), "postgresql": bool(programs), "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "storage.json").write_text(json.dumps(result, indent=2))
    print("written bench/results/storage.json")


if __name__ == "__main__":
    main()
