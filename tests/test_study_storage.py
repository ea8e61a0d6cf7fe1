"""Optuna studies shared by search processes running at the same time, through a database server and through
`tamenet study-server` (Optuna's gRPC storage proxy): SPEC I2, "searches over processes and machines".

References: Optuna's own record of the study (loaded from the database after the searches) and the rows of
each process's search.json. The PostgreSQL server is a real one, started for this module in a throwaway
folder from Debian's `postgresql` package (`.ci/run` installs it when missing); without its programs the
PostgreSQL test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from servers import free_port, postgres_programs, throwaway_postgres
from tamenet.cli import main
from tamenet.select import trials as trials_module

SRC = Path(__file__).resolve().parents[1] / "src"

RECIPE = {
    "data": {"name": "moons", "n_samples": 120, "noise": 0.2},
    "model": {"widths": [8], "dropout": 0.1},
    "train": {"optimizer": "adam", "lr": 0.02, "epochs": 20, "batch_size": 32},  # a trial long enough that both processes start
    "track": {"tensorboard": False, "plots": False},
}
TRIALS = 6
SEARCH = ["search", "r.yaml", "--trials", str(TRIALS), "--space", "train.lr=0.003:0.3:log", "--folds", "2",
          "--batch", "2", "--pruner", "none", "--no-report"]  # no pruning: every trial completes, whatever the timing


def tamenet(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tamenet", "--debug", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def two_searches_at_once(tmp_path: Path, storage: str) -> list[dict]:
    """Two `tamenet search --trials 6 --storage URL` processes started together, each asking for the study's
    total of 6: their search.json files, after both have finished."""
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    workers = [tamenet([*SEARCH, "--storage", storage, "--study-name", "s", "--out", out], tmp_path)
               for out in ("a", "b")]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    return [json.loads((tmp_path / out / "search.json").read_text()) for out in ("a", "b")]


def check_one_study(results: list[dict], study: optuna.Study) -> None:
    """The two processes ran the study's trials between them, each trial once, with values of their own."""
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    own = [r["trials"]["this_process"] for r in results]
    # each process stops asking once the study holds 6; in a race each may overshoot by one trial
    assert TRIALS <= len(study.trials) <= TRIALS + 2 and len(finished) == len(study.trials)
    assert sum(own) == len(study.trials) and min(own) >= 1, own  # both worked on the one study
    assert len({t.params["train.lr"] for t in study.trials}) == len(study.trials)  # never the same values twice
    last = max(results, key=lambda r: len(r["candidates"]))
    assert [r["trial"] for r in last["candidates"]] == [t.number for t in study.trials]
    for row in last["candidates"]:  # each trial's value is the cross-validated accuracy of its row
        assert study.trials[row["trial"]].value == row["cv_accuracy_mean"]
    assert last["best"]["cv_accuracy_mean"] == study.best_value


# ================================================================== a PostgreSQL server


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server for this module (tests/servers.py), stopped and removed afterwards."""
    programs = postgres_programs()
    if programs is None:
        pytest.skip("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
    with throwaway_postgres(programs) as url:
        yield url


def test_two_searches_at_once_share_one_study_on_a_postgresql_server(tmp_path, postgres_url):
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver comes with the 'cluster' extra")
    results = two_searches_at_once(tmp_path, postgres_url)
    check_one_study(results, optuna.load_study(study_name="s", storage=postgres_url))
    assert all(r["trials"]["storage"] == postgres_url for r in results)


def test_a_postgresql_server_that_does_not_answer_ends_in_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver comes with the 'cluster' extra")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    monkeypatch.chdir(tmp_path)
    url = f"postgresql+psycopg2://tamenet:secret@127.0.0.1:{free_port()}/postgres"
    assert main([*SEARCH, "--storage", url, "--out", "never"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tamenet search: error: --storage ")
    assert "Optuna could not open it (OperationalError" in err
    assert "secret" not in err and "tamenet:***@127.0.0.1" in err  # the password is never printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


# ================================================================== a study server (Optuna's gRPC proxy)


@pytest.fixture
def study_server(tmp_path):
    """`tamenet study-server` over an sqlite file, on a free port: (its grpc:// URL, the database URL)."""
    pytest.importorskip("grpc", reason="the study server's gRPC comes with the 'cluster' extra")
    database, port = f"sqlite:///{tmp_path / 'study.db'}", free_port()
    server = tamenet(["study-server", "--storage", database, "--port", str(port)], tmp_path)
    deadline = time.monotonic() + 60
    while True:  # listening: workers started now connect at once, not after gRPC's reconnection back-off
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert server.poll() is None and time.monotonic() < deadline, server.communicate()[1][-2000:]
        time.sleep(0.1)
    yield f"grpc://127.0.0.1:{port}", database
    server.terminate()
    server.communicate(timeout=30)


def test_two_searches_at_once_share_one_study_through_a_study_server(tmp_path, study_server):
    grpc_url, database = study_server
    results = two_searches_at_once(tmp_path, grpc_url)
    check_one_study(results, optuna.load_study(study_name="s", storage=database))  # the database behind it
    assert all(r["trials"]["storage"] == grpc_url for r in results)


def test_a_study_server_refuses_a_taken_port_and_a_proxy_of_a_proxy(tmp_path, study_server, monkeypatch, capsys):
    grpc_url, database = study_server
    port = grpc_url.rsplit(":", 1)[1]
    monkeypatch.chdir(tmp_path)
    for argv, words in (
        (["--storage", f"sqlite:///{tmp_path / 'other.db'}", "--port", port],
         [f"--port {port}: cannot listen there", "expected a free port"]),
        (["--storage", grpc_url], ["needs the database itself", "not another study server"]),
        (["--storage", "sqlite:///nowhere/s.db"], ["folder 'nowhere'", "does not exist"]),
        (["--storage", database, "--port", "70000"], ["--port: expected a port in [1, 65535], got 70000"]),
    ):
        assert main(["study-server", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("tamenet study-server: error: "), err
        assert all(w in err for w in words), err
    assert not (tmp_path / "other.db").exists()


def test_a_study_server_that_does_not_answer_ends_in_one_line_within_the_wait(tmp_path, monkeypatch, capsys):
    pytest.importorskip("grpc", reason="the study server's gRPC comes with the 'cluster' extra")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trials_module, "SERVER_WAIT", 1.0)
    port = free_port()
    started = time.monotonic()
    assert main([*SEARCH, "--storage", f"grpc://127.0.0.1:{port}", "--out", "never"]) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err.strip()
    assert err == (f"tamenet search: error: --storage grpc://127.0.0.1:{port}: no study server answered at "
                   f"127.0.0.1:{port} within 1 s; expected one started with: tamenet study-server --storage "
                   f"DATABASE_URL --host 127.0.0.1 --port {port}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


@pytest.mark.parametrize("url", ["grpc://", "grpc://host:0", "grpc://host:99999", "grpc://host:port", "grpc://a b:1"])
def test_a_malformed_study_server_url_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, url):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    monkeypatch.chdir(tmp_path)
    assert main([*SEARCH, "--storage", url, "--out", "never"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tamenet search: error: --storage: a study server is grpc://HOST:PORT (a port in [1, 65535]), got {url!r}"


# ================================================================== sqlite, two processes at once


def test_two_searches_at_once_on_one_sqlite_file_share_its_study(tmp_path):
    database = f"sqlite:///{tmp_path / 'study.db'}"
    results = two_searches_at_once(tmp_path, database)
    check_one_study(results, optuna.load_study(study_name="s", storage=database))


def test_two_searches_at_once_share_one_study_in_a_journal_file(tmp_path):
    journal = tmp_path / "study.log"
    results = two_searches_at_once(tmp_path, f"journal:///{journal}")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    check_one_study(results, optuna.load_study(study_name="s", storage=storage))


def test_processes_that_start_together_with_one_seed_draw_different_values(tmp_path):
    """Two processes' studies on one storage, asking in turn, each sampler made from the same seed: a trial's
    values are drawn by a sampler seeded with its number, so the two never draw the same. The control: one
    sampler per process seeded once (as before this was fixed) draws the same values in both."""
    from tamenet.select.options import SAMPLERS
    from tamenet.select.trials import ask_batch, ask_numbered, parse_dimension

    dims = [parse_dimension("train.lr=0.003:0.3:log"), parse_dimension("seed=0:99")]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for ask, name in ((lambda study: ask_numbered(study, dims, lambda n: SAMPLERS["tpe"](7 + n)), "numbered"),
                      (lambda study: ask_batch(study, dims, 1)[0], "control")):
        studies = [optuna.create_study(study_name=name, storage=url, load_if_exists=True, direction="maximize",
                                       sampler=SAMPLERS["tpe"](7)) for _ in range(2)]
        drawn = [ask(studies[i % 2])[1] for i in range(6)]  # process 0, process 1, process 0, ...
        numbers = [t.number for t in studies[0].trials]
        assert numbers == list(range(6))
        lrs = [d["train.lr"] for d in drawn]
        if name == "numbered":
            assert len(set(lrs)) == 6
            # each trial's values are its number's: the draws of a lone process asking 6 in a row
            alone = [ask_numbered(optuna.create_study(storage=f"sqlite:///{tmp_path / f'alone{i}.db'}",
                                                      sampler=SAMPLERS["tpe"](7)), dims,
                                  lambda n, i=i: SAMPLERS["tpe"](7 + i))[1] for i in range(6)]
            assert alone == drawn
        else:
            assert lrs[0::2] == lrs[1::2]  # both processes drew the same values, in pairs


def test_a_process_alone_on_a_fresh_study_draws_the_same_values_on_every_rerun(tmp_path):
    from tamenet.select import search

    raw = {**RECIPE, "seed": 3}
    values = []
    for name in ("one", "two"):
        url = f"sqlite:///{tmp_path / name}.db"
        search(raw, trials=3, space=["train.lr=0.003:0.3:log"], batch=2, folds=2, refit=False, storage=url)
        values.append([t.params["train.lr"] for t in optuna.load_study(study_name="tamenet", storage=url).trials])
    assert values[0] == values[1] and len(set(values[0])) == 3


def test_a_process_that_finds_the_study_full_chooses_among_its_trials_or_says_why_it_cannot(tmp_path, monkeypatch,
                                                                                           capsys):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    monkeypatch.chdir(tmp_path)
    full = ["--storage", "sqlite:///full.db", "--study-name", "s"]
    assert main([*SEARCH[:3], "3", *SEARCH[4:], *full, "--out", "first"]) == 0
    capsys.readouterr()
    assert main([*SEARCH[:3], "3", *SEARCH[4:], *full, "--out", "second"]) == 0  # nothing left to run
    out = capsys.readouterr().out
    assert "memory: no population trained here: other processes ran every trial of the study" in out
    first, second = (json.loads((tmp_path / d / "search.json").read_text()) for d in ("first", "second"))
    assert second["trials"]["this_process"] == 0 and second["members"] == 0
    assert second["best"]["trial"] == first["best"]["trial"]  # chosen among the study's three trials
    study = optuna.create_study(study_name="busy", storage="sqlite:///busy.db", direction="maximize")
    study.ask(), study.ask()  # two trials another process is still running
    assert main([*SEARCH[:3], "2", *SEARCH[4:], "--storage", "sqlite:///busy.db", "--study-name", "busy",
                 "--out", "third"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("tamenet search: error: --storage sqlite:///busy.db: the study 'busy' already holds 2 trials "
                   "(--trials 2 counts the study's trials) and none has finished: other processes are running "
                   "them; expected a larger --trials to add trials of this process")
    assert sorted(p.name for p in (tmp_path / "third").iterdir()) == ["recipe.yaml", "status.json"]
    assert json.loads((tmp_path / "third" / "status.json").read_text())["state"] == "failed"


def test_the_trials_of_a_process_that_died_are_failed_and_run_again_by_the_next(tmp_path, monkeypatch):
    """Process A trains a batch of 3 trials with a heartbeat every second and is killed; process B, started after
    the grace (2 heartbeats), fails A's 3 silent trials as stale and runs 3 trials in their place. The control:
    while A lives, its heartbeats keep its trials running past the grace."""
    from optuna.trial import TrialState

    from tamenet.select.trials import quiet_heartbeats

    database = f"sqlite:///{tmp_path / 'study.db'}"
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump({**RECIPE, "train": {**RECIPE["train"], "epochs": 5000}}))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    argv = ["--trials", "3", "--batch", "3", "--space", "train.lr=0.003:0.3:log", "--folds", "2", "--pruner", "none",
            "--no-report", "--heartbeat", "1", "--storage", database, "--study-name", "s"]
    a = tamenet(["search", "slow.yaml", *argv, "--out", "a"], tmp_path)

    def states() -> list[TrialState]:
        try:
            return [t.state for t in optuna.load_study(study_name="s", storage=database).trials]
        except KeyError:  # the study is not created yet
            return []

    deadline = time.monotonic() + 120
    while states() != [TrialState.RUNNING] * 3:
        assert a.poll() is None and time.monotonic() < deadline, a.communicate()[1][-2000:]
        time.sleep(0.2)
    time.sleep(3.0)  # longer than the grace of 2 s
    with quiet_heartbeats():
        judge = optuna.storages.RDBStorage(database, heartbeat_interval=1, grace_period=2)
        optuna.storages.fail_stale_trials(optuna.load_study(study_name="s", storage=judge))
    assert states() == [TrialState.RUNNING] * 3  # alive: its heartbeats came in time
    a.kill()
    a.communicate(timeout=30)
    time.sleep(3.0)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "r.yaml", *argv, "--out", "b"]) == 0
    assert states() == [TrialState.FAIL] * 3 + [TrialState.COMPLETE] * 3
    result = json.loads((tmp_path / "b" / "search.json").read_text())
    assert result["trials"]["this_process"] == 3 and [r["trial"] for r in result["candidates"]] == [3, 4, 5]


def test_a_trial_failed_as_stale_while_this_process_still_trains_it_is_left_to_the_others(tmp_path):
    """Another process fails this one's running trials as stale (its heartbeats came too late) during the first
    batch: their tells are refused by Optuna, so this process drops their rows and, as the failed trials no
    longer count, trains a batch in their place."""
    from optuna.trial import TrialState

    from tamenet.select import search

    database = f"sqlite:///{tmp_path / 'study.db'}"
    failed = []

    def another_process_fails_them(record, trainer) -> None:
        if not failed:
            study = optuna.load_study(study_name="s", storage=database)
            for trial in study.get_trials(states=(TrialState.RUNNING,)):
                study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                failed.append(trial.number)

    result = search(RECIPE, trials=2, space=["train.lr=0.003:0.3:log"], batch=2, folds=2, refit=False,
                    pruner="none", storage=database, study_name="s", callbacks=[another_process_fails_them])
    assert failed == [0, 1]
    states = [t.state for t in optuna.load_study(study_name="s", storage=database).trials]
    assert states == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    assert [r["trial"] for r in result["candidates"]] == [2, 3] and result["trials"]["this_process"] == 2
