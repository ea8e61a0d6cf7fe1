"""Random or Bayesian search with Optuna, trained a batch of trials at a time as one population (B3, X1, X2).

Optuna's ask-and-tell interface asks for a batch of trials at once; the batch's candidates (numeric
values as members, x folds) train as one population per structural choice. After every epoch each
trial reports the mean over its folds of the best stopping-set metric so far (`trial.report`, never
the scored rows; without a stopping set, its folds' scored-row metric now, as successive halving
ranks then); a trial the pruner rejects (`trial.should_prune`) leaves the population for real,
its members scored with their best weights, as successive halving does. When the batch is done,
every trial is told its cross-validated score (mean over folds of the scored rows), or that it was
pruned or failed (a diverged fold). Batches make the search less sequential than Optuna's usual
one-trial-at-a-time loop: TPE proposes a whole batch from the trials finished before it (with the
constant-liar strategy for the pending ones), and the median pruner compares a trial with the
trials *completed in earlier batches*, so the first batch is never pruned.

References: Bergstra et al., "Algorithms for hyper-parameter optimization" (TPE), NeurIPS 2011;
Akiba et al., "Optuna: a next-generation hyperparameter optimization framework", KDD 2019.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import Recipe, RecipeError, member_fields, per_member_values
from ..registry import lookup
from ..train import TASK_METRIC, EpochRecord, Trainer
from .cv import CVRun, Pool, candidate_table, run_cv
from .options import BATCH, HEARTBEAT, PRUNERS, SAMPLERS, STUDY_NAME, keeps_heartbeats  # noqa: F401  (also importable from here)
from .search import NUMERIC_KEYS, SCORE_PREFIXES, parse_values, population_recipe
from .splits import Fold

if TYPE_CHECKING:  # Optuna is imported in the functions that use it: slow, and only needed for --trials
    from collections.abc import Callable, Iterator

    import optuna
    from optuna.distributions import BaseDistribution

INTEGER_KEYS = ("seed", *(f.path for f in member_fields() if f.integer))
"""Numeric keys whose range holds integers."""
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")


@dataclass(frozen=True)
class Dimension:
    """One searched key: a range (float or int, optionally log-scaled) or a list of choices."""

    key: str
    distribution: BaseDistribution
    choices: tuple[Any, ...] | None = None  # categorical values; Optuna sees their JSON text

    @property
    def numeric(self) -> bool:
        return self.key in NUMERIC_KEYS

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.choices is not None else value


def parse_dimension(item: str) -> Dimension:
    """`KEY=LOW:HIGH` (uniform), `KEY=LOW:HIGH:log` (log-uniform; integers for `seed`) or
    `KEY=A,B,C` / `KEY=[[16], [32, 32]]` (choices)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not key or not text:
        raise RecipeError(f"--space: expected KEY=LOW:HIGH[:log] or KEY=A,B,... (e.g. train.lr=1e-4:1:log), got {item!r}")
    if ":" in text and not text.startswith("["):
        parts = [p.strip() for p in text.split(":")]
        log = len(parts) == 3 and parts[2] == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log) or not all(_NUMBER.fullmatch(p) for p in parts[:2]):
            raise RecipeError(f"--space {key}: a range is LOW:HIGH or LOW:HIGH:log with numbers, got {text!r}")
        if key not in NUMERIC_KEYS:
            raise RecipeError(f"--space {key}: a range needs a numeric key ({', '.join(NUMERIC_KEYS)}); "
                              f"give choices as A,B,... for other keys, got {text!r}")
        low, high = float(parts[0]), float(parts[1])
        if not low < high or (log and low <= 0):
            raise RecipeError(f"--space {key}: expected LOW < HIGH{' and LOW > 0 on a log scale' if log else ''}, got {text!r}")
        if key in INTEGER_KEYS:
            if not all(_INTEGER.fullmatch(p) for p in parts[:2]):
                raise RecipeError(f"--space {key}: expected an integer range such as 0:99, got {text!r}")
            return Dimension(key, IntDistribution(int(low), int(high), log=log))
        return Dimension(key, FloatDistribution(low, high, log=log))
    try:
        values = parse_values(text)
    except RecipeError as err:
        raise RecipeError(str(err).replace("--grid", f"--space {key}")) from None
    if key in NUMERIC_KEYS and any(isinstance(v, (list, dict, str, bool)) for v in values):
        raise RecipeError(f"--space {key}: expected plain numbers, got {values}")
    texts = tuple(json.dumps(v) for v in values)
    return Dimension(key, CategoricalDistribution(texts), tuple(values))


def parse_space(items: list[str], recipe: Recipe) -> list[Dimension]:
    """`--space` items -> dimensions, refusing a key given twice or already a per-member list in the recipe."""
    if not items:
        raise RecipeError("--trials needs a search space: --space KEY=LOW:HIGH[:log] or KEY=A,B,... (repeatable)")
    dims = [parse_dimension(item) for item in items]
    keys = [d.key for d in dims]
    for key in keys:
        if keys.count(key) > 1:
            raise RecipeError(f"--space {key}: given more than once")
        value = per_member_values(recipe).get(key)
        if isinstance(value, list):
            raise RecipeError(f"--space {key}: the recipe already gives a list for this key; give it as a number")
    return dims


def make_study(metric: str, *, sampler: str, pruner: str, seed: int, epochs: int, storage: str | None = None,
               study_name: str | None = None, heartbeat: int | None = None) -> optuna.Study:
    """A study that maximizes accuracy or minimizes RMSE, seeded for reproducible trials: in memory, or in an
    Optuna `storage` (``sqlite:///study.db``, a database server's URL) shared with every process that names it,
    created by the first and loaded by the others (Optuna's own distributed mode)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if metric == "accuracy" else "minimize"
    shared = {}
    if storage is not None:
        shared = {"storage": open_storage(storage, heartbeat=heartbeat), "study_name": study_name or STUDY_NAME, "load_if_exists": True}
    study = optuna.create_study(direction=direction, sampler=lookup(SAMPLERS, sampler, "sampler")(seed),
                                pruner=lookup(PRUNERS, pruner, "pruner")(epochs), **shared)
    if storage is not None and study.direction.name.lower() != direction:
        raise StorageError(f"--study-name {study.study_name}: the stored study is to {study.direction.name.lower()}, "
                           f"this search's {metric} is to {direction}; expected another --study-name")
    return study


ROW_ATTR = "tamenet_row"
"""The user attribute in which every trial keeps its cross-validated row, so any process can rebuild the table."""


class StorageError(RecipeError):
    """An Optuna storage that cannot be opened or holds a study of another kind: one line, exit code 2."""


TABLE_RACE_TRIES = 5
"""Times a storage is opened before giving up when another process was creating its tables at the same moment
(two searches started together on a fresh database: PostgreSQL refuses the second CREATE, "already exists";
sqlite the second stamp of the schema version, an IntegrityError)."""

SERVER_WAIT = 10.0
"""Seconds a search waits for a study server (``--storage grpc://HOST:PORT``) to answer before giving up."""


def open_storage(url: str, *, heartbeat: int | None = None) -> Any:
    """Optuna's storage of this URL: `optuna.storages.RDBStorage` for a database (tables created on first use),
    `optuna.storages.JournalStorage` for a journal file, `optuna.storages.GrpcStorageProxy` for a study server
    (``grpc://HOST:PORT``, waited for `SERVER_WAIT` s). A URL it cannot open (malformed, a file it cannot write,
    a server that does not answer, a missing driver) -> one line. `heartbeat` (seconds, databases only): a
    running trial without a heartbeat for twice as long counts as stale (`fail_stale_trials`)."""
    import optuna

    if url.startswith("grpc://"):
        return _study_server(url)
    if url.startswith("journal:///"):
        return _journal(url)
    for attempt in range(1, TABLE_RACE_TRIES + 1):
        try:
            beats = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat} if heartbeat else {}
            with quiet_heartbeats():
                return optuna.storages.RDBStorage(url, **beats)
        except Exception as err:  # sqlalchemy's errors (ArgumentError, OperationalError) and ImportError, ValueError
            if not (isinstance(err, (ImportError, ValueError, RuntimeError, OSError))
                    or type(err).__module__.startswith("sqlalchemy")):
                raise
            if attempt < TABLE_RACE_TRIES and (type(err).__name__ == "IntegrityError" or "already exists" in str(err)):
                time.sleep(0.2 * attempt)  # another process created the tables first: they are there now
                continue
            first = " ".join(str(err).split())[:200]
            hint = ""
            if isinstance(err, ImportError) and url.startswith("postgresql"):
                hint = "; the PostgreSQL driver comes with pip install 'tamenet[cluster]'"
            raise StorageError(f"--storage {redact(url)}: Optuna could not open it "
                               f"({type(err).__name__}: {first}){hint}") from None


def _journal(url: str) -> Any:
    """Optuna's journal storage in the file of ``journal:///FILE``: an append-only log of operations, each
    write under a lock of its own (a symbolic link, which works on network file systems); else one line."""
    import optuna

    try:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url[len("journal:///"):]))
    except OSError as err:
        raise StorageError(f"--storage {url}: Optuna could not open the journal file ({err})") from None


def _study_server(url: str) -> Any:
    """A `GrpcStorageProxy` to the study server at `url`, once it answers; else a one-line `StorageError`."""
    import warnings

    from ..extras import require
    from .options import grpc_address

    require("grpc", extra="cluster", feature="a study server (--storage grpc://...)")
    import optuna

    host, port = grpc_address(url)
    with warnings.catch_warnings():  # Optuna marks its gRPC proxy experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=SERVER_WAIT)
    except ConnectionError:
        proxy.close()
        raise StorageError(f"--storage {url}: no study server answered at {host}:{port} within {SERVER_WAIT:g} s; "
                           f"expected one started with: tamenet study-server --storage DATABASE_URL "
                           f"--host {host} --port {port}") from None
    return proxy


def redact(url: str) -> str:
    """`url` with its password (``scheme://user:PASSWORD@host``) replaced by ``***``, for messages and search.json."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def study_rows(study: optuna.Study, own: list[dict]) -> list[dict]:
    """Every finished trial of a shared study as a row (its kept `ROW_ATTR`), by trial number; `own` rows (this
    process's) keep their population index, the others' have ``population`` None. A trial still running in
    another process, or one without a row, is left out."""
    from optuna.trial import TrialState

    mine = {row["trial"]: row for row in own}
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        if trial.number in mine:
            rows.append(mine[trial.number])
        elif ROW_ATTR in trial.user_attrs:
            rows.append({**trial.user_attrs[ROW_ATTR], "population": None})
    rows.sort(key=lambda row: row["trial"])
    for i, row in enumerate(rows):
        row["candidate"] = i
    return rows


def _to_ask(study: optuna.Study, trials: int, batch: int, done: int, shared: bool) -> int:
    """How many trials the next batch asks: up to `batch`, until the study (shared) or this run holds `trials`."""
    held = held_trials(study) if shared else done
    return max(0, min(batch, trials - held))


def held_trials(study: optuna.Study) -> int:
    """The trials of a shared study that count towards `--trials`: all but those failed without a row, the
    trials of a process that died (failed as stale by `fail_stale_trials`), which others run again in their place.
    A trial this package fails (a diverged fold) keeps its row and counts."""
    from optuna.trial import TrialState

    return sum(not (t.state == TrialState.FAIL and ROW_ATTR not in t.user_attrs)
               for t in study.get_trials(deepcopy=False))


@contextlib.contextmanager
def quiet_heartbeats() -> Iterator[None]:
    """Hides what Optuna warns of heartbeats outside `study.optimize` (experimental; "supposed to be used with
    Study.optimize"): tamenet records them itself (`Heartbeats`)."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


class Heartbeats:
    """A daemon thread that records a heartbeat every `interval` seconds for the trials this process is running
    (Optuna's `record_heartbeat`; its own heartbeat thread lives in `study.optimize`, which tamenet's batches do
    not use). `running(trials)` names them, at once recorded; `running([])` after the batch is told."""

    def __init__(self, storage: Any, interval: int) -> None:
        import threading

        self.storage, self.interval = storage, interval
        self.ids: list[int] = []
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._beat, name="tamenet-heartbeats", daemon=True)

    def __enter__(self) -> Heartbeats:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def running(self, trials: list[optuna.Trial]) -> None:
        with self.lock:
            self.ids = [t._trial_id for t in trials]  # Optuna's own heartbeat thread takes the same id
            self._record()

    def _record(self) -> None:
        for trial_id in self.ids:
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # a storage that did not answer this once: the next beat tries again
                pass

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                self._record()


def ask_batch(study: optuna.Study, dims: list[Dimension], count: int) -> list[tuple[optuna.Trial, dict[str, Any]]]:
    """`count` trials asked at once, each with its decoded values {key: value}."""
    distributions = {d.key: d.distribution for d in dims}
    trials = [study.ask(distributions) for _ in range(count)]
    return [(t, {d.key: d.decode(t.params[d.key]) for d in dims}) for t in trials]


def ask_numbered(study: optuna.Study, dims: list[Dimension],
                 reseed: Callable[[int], optuna.samplers.BaseSampler]) -> tuple[optuna.Trial, dict[str, Any]]:
    """One trial of a shared study, its values drawn by the sampler `reseed(trial number)`.

    The storage numbers the trials of all processes uniquely, so processes that start together (each with the
    same `--seed`, on any machine) never draw the same values, and a process alone on a fresh study draws the
    same values on every rerun. The sampler is made anew per trial: TPE keeps nothing but its seed between
    trials (it reads the finished and running trials from the storage)."""
    from optuna.distributions import FloatDistribution, IntDistribution

    trial = study.ask()
    study.sampler = reseed(trial.number)
    for d in dims:
        dist = d.distribution
        if isinstance(dist, FloatDistribution):
            trial.suggest_float(d.key, dist.low, dist.high, log=dist.log)
        elif isinstance(dist, IntDistribution):
            trial.suggest_int(d.key, dist.low, dist.high, log=dist.log)
        else:
            trial.suggest_categorical(d.key, dist.choices)
    return trial, {d.key: d.decode(trial.params[d.key]) for d in dims}


class TrialReporter:
    """The `leave` callback of a batch population: reports each trial per epoch, names the pruned ones' members.

    A trial's intermediate value at epoch e is the mean over its folds of the best stopping-set
    metric up to e (the loop's validation rows are the stopping set); without a stopping set
    (`stop_share` 0, or neither early stopping nor restore_best), of its folds' scored-row metric at
    e, the score it is finally told (the last epoch's weights). It reports while any of its folds still trains, so the reports do not depend
    on which other trials share its population.
    """

    def __init__(self, trials: list[optuna.Trial], folds: int, metric: str) -> None:
        self.trials, self.folds, self.metric = trials, folds, metric
        self.sign = 1.0 if metric == "accuracy" else -1.0
        self.best: dict[int, float] = {}
        self.diverged: set[int] = set()

    def __call__(self, record: EpochRecord, trainer: Trainer, scored: list[float] | None = None) -> list[int]:
        import optuna

        present: dict[int, list[int]] = {}
        for i, row in enumerate(record.rows):
            member = row["member"]
            value = row[f"val_{self.metric}"] if scored is None else scored[i]
            if record.diverged[i] or trainer.state.diverged_at[i] is not None:
                self.diverged.add(member)
            elif scored is not None and math.isfinite(value):
                self.best[member] = value  # no stopping set: the weights it would be scored with are the current ones
            elif math.isfinite(value) and (member not in self.best or self.sign * value > self.sign * self.best[member]):
                self.best[member] = value
            present.setdefault(member // self.folds, []).append(i)
        leaving = []
        for candidate, indices in present.items():
            members = range(candidate * self.folds, (candidate + 1) * self.folds)
            if any(m in self.diverged for m in members) or not all(m in self.best for m in members):
                continue  # a diverged fold fails the trial; it is told so at the end
            trial = self.trials[candidate]
            try:
                trial.report(sum(self.best[m] for m in members) / self.folds, record.epoch)
            except optuna.exceptions.UpdateFinishedTrialError:  # failed as stale by another process
                leaving.extend(indices)  # run again there: no use training it on here
                continue
            if trial.should_prune():
                leaving.extend(indices)
        return leaving


def run_trials(
    recipe: Recipe, dims: list[Dimension], pool: Pool, folds: list[Fold], *, trials: int, batch: int = BATCH,
    sampler: str = "tpe", pruner: str = "median", seed: int = 0, stop_share: float, callbacks=None,
    max_memory: str | int | None = None, storage: str | None = None, study_name: str | None = None,
    heartbeat: int | None = None,
) -> tuple[list[dict], list[CVRun], optuna.Study]:
    """Every trial's cross-validated scores, a batch at a time; one population per structural choice in a batch.

    With a shared `storage`, `trials` counts the study's trials: this process asks batches until the study
    holds that many (with other processes asking too, each batch is asked one trial at a time, so together they
    overshoot by at most one trial each in a race), and each trial's values are drawn by a sampler seeded with
    `seed` + its trial number (`ask_numbered`), so that two processes do not propose the same values. The rows
    returned are this process's trials; `study_rows` adds the others'. In a database storage the process records a
    heartbeat every `heartbeat` seconds (default `HEARTBEAT`; 0: none) for the trials it is training, and before
    each batch fails the study's stale trials (a dead process's), which then no longer count towards `trials`.
    """
    if trials < 1 or batch < 1:
        raise ValueError(f"--trials and --batch: expected positive counts, got {trials} trials, batch {batch}")
    metric = TASK_METRIC[pool.task]
    shared = storage is not None
    if shared and heartbeat is None:
        heartbeat = HEARTBEAT if keeps_heartbeats(storage) else 0
    study = make_study(metric, sampler=sampler, pruner=pruner, seed=seed, epochs=recipe.train.epochs,
                       storage=storage, study_name=study_name, heartbeat=heartbeat)
    # the storage object itself, as Optuna's own fail_stale_trials and heartbeat thread take it
    with (Heartbeats(study._storage, heartbeat) if shared and heartbeat else contextlib.nullcontext()) as beats, \
            quiet_heartbeats():
        rows, runs = _trial_batches(recipe, dims, pool, folds, study, metric, trials=trials, batch=batch,
                                    sampler=sampler, seed=seed, stop_share=stop_share, callbacks=callbacks,
                                    max_memory=max_memory, shared=shared, beats=beats)
    return rows, runs, study


def _trial_batches(
    recipe: Recipe, dims: list[Dimension], pool: Pool, folds: list[Fold], study: optuna.Study, metric: str, *,
    trials: int, batch: int, sampler: str, seed: int, stop_share: float, callbacks, max_memory, shared: bool,
    beats: Heartbeats | None,
) -> tuple[list[dict], list[CVRun]]:
    """`run_trials`'s loop: ask a batch, train it as populations, tell every trial; this process's rows."""
    import optuna
    from optuna.trial import TrialState

    rows: list[dict] = []
    runs: list[CVRun] = []
    while True:
        if shared:
            optuna.storages.fail_stale_trials(study)  # a dead process's trials: failed, run again in their place
        if (count := _to_ask(study, trials, batch, len(rows), shared)) <= 0:
            break
        if shared:  # one at a time, each after a look at the study: another process may be asking too
            asked = []
            while len(asked) < count and held_trials(study) < trials:
                asked.append(ask_numbered(study, dims, lambda number: lookup(SAMPLERS, sampler, "sampler")(seed + number)))
        else:
            asked = ask_batch(study, dims, count)
        if beats is not None:
            beats.running([trial for trial, _ in asked])
        groups: dict[str, list[int]] = {}
        for i, (_, values) in enumerate(asked):
            structure = {d.key: values[d.key] for d in dims if not d.numeric}
            groups.setdefault(json.dumps(structure), []).append(i)
        batch_rows: dict[int, dict] = {}
        for members in groups.values():
            structure = {d.key: asked[members[0]][1][d.key] for d in dims if not d.numeric}
            numbers = [{d.key: asked[i][1][d.key] for d in dims if d.numeric} for i in members]
            population = population_recipe(recipe, structure, numbers)
            reporter = TrialReporter([asked[i][0] for i in members], len(folds), metric)
            run = run_cv(population, pool, folds, stop_share=stop_share, callbacks=callbacks, leave=reporter,
                         max_memory=max_memory)
            runs.append(run)
            for c, row in enumerate(candidate_table(run)):
                scores = {k: v for k, v in row.items() if k.startswith(SCORE_PREFIXES)}
                trial = asked[members[c]][0]
                batch_rows[members[c]] = {"trial": trial.number, "population": len(runs) - 1,
                                          **asked[members[c]][1], **scores,
                                          "pruned": row["dropped_at_epoch"] is not None}
        for i, (trial, _) in enumerate(asked):
            row = batch_rows[i]
            value = row[f"cv_{metric}_mean"]
            try:
                if shared:  # any process can rebuild the table from the study
                    trial.set_user_attr(ROW_ATTR, {k: v for k, v in row.items() if k != "population"})
                if row["pruned"]:
                    study.tell(trial, state=TrialState.PRUNED)
                elif not math.isfinite(value):
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
            except optuna.exceptions.UpdateFinishedTrialError:
                # another process failed it as stale (this one's heartbeats came too late): it is run again there
                continue
            rows.append(row)
        if beats is not None:
            beats.running([])
    for i, row in enumerate(rows):
        row["candidate"] = i
    return rows, runs
