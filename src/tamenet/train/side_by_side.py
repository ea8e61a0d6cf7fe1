"""Several populations trained side by side, one CPU thread each: the loop of `Trainer.run`, for one or many.

A population's step is a chain of batched matrix products over its members, each of them small (a 64-row
batch per member) and the element-wise passes between them memory-bound. On a CPU such products and passes
split over several threads poorly: on this project's 2-core machine the 130-member search ran at 46 % of the
2-core matmul rate on two threads but at 53 % of the 1-core rate on one, and two single-threaded processes
each kept their single-thread speed (bench/README.md, "Members side by side"). So a population split into W
parts, each trained by a thread of its own with one intra-op thread, uses W cores better than one population
on W threads does.

`train_side_by_side(trainers, workers)` runs every trainer's epochs in lockstep: each epoch's steps and
validation (`Trainer.train_epoch`) on the worker threads at once, then each trainer's bookkeeping (metrics
rows, early stopping, `epoch_end`: listeners and controllers) on the calling thread, in the trainers' order,
so a callback never runs on two threads at once and always sees the same sequence. Nothing else is shared:
each trainer has its own members, data and random streams (counter-based, see `nn/random.py`), and the parts'
numbers are those of the whole population on the process's threads (bit for bit in tests/test_side_by_side.py,
which trains one part per thread against one population; and on the 130-fit search, 1 against 2 threads). Listeners of `epoch_begin`
or `step_end` would run on the worker threads: a trainer with one is trained alone (`can_share_cores`).
Ctrl-C waits for the epoch the workers are in, then ends every trainer as `Trainer.run` does.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import torch

from .events import Listener

if TYPE_CHECKING:
    from .loop import Trainer

MIN_MEMBERS_PER_WORKER = 16
"""The default split gives each part at least this many members. Measured on the search benchmark's network
(10 epochs, 2 threads, medians of 4; bench/README.md): 2 parts of 4 members took 0.88x the speed of one
population of 8, parts of 8 0.97x, parts of 16 1.07x, parts of 40-65 1.05-1.13x."""


def can_share_cores(trainer: "Trainer") -> bool:
    """Whether the trainer can train on a worker thread: on the CPU, no `epoch_begin` / `step_end` listener
    (those would be called on the worker) and no data-parallel ranks (they own their process's cores)."""
    handlers = (*trainer.events.listeners, *trainer.events.controllers)
    heard = any(type(h).epoch_begin is not Listener.epoch_begin or type(h).step_end is not Listener.step_end
                for h in handlers)
    return trainer.device.type == "cpu" and trainer.parallel is None and not heard


def side_by_side_workers(members: int, *, threads: int | None = None, device: str = "cpu") -> int:
    """How many parts a CPU population of `members` trains in by default: one per intra-op thread
    (`torch.get_num_threads()`), at most one per MIN_MEMBERS_PER_WORKER members, at least 1; 1 off the CPU."""
    if device != "cpu":
        return 1
    threads = torch.get_num_threads() if threads is None else threads
    return max(1, min(threads, members // MIN_MEMBERS_PER_WORKER))


def split_members(ids: list[int], parts: int) -> list[list[int]]:
    """`ids` dealt round robin into `parts` lists (sizes differ by at most one): the members of a candidate, which
    tend to leave together (diverged, stopped early), spread over every part, so the parts stay balanced."""
    if parts < 1:
        raise ValueError(f"split_members: expected at least one part, got {parts}")
    parts = min(parts, len(ids))
    return [ids[p::parts] for p in range(parts)]


def train_side_by_side(trainers: list["Trainer"], *, workers: int = 1) -> None:
    """Train every trainer to its end, their epochs in lockstep on up to `workers` threads (1: on this thread).

    Each worker thread multiplies with one intra-op thread; the process's thread count is restored at the end.
    A trainer that `can_share_cores` refuses is trained on this thread, alone, before the others.
    """
    if workers > 1:
        alone = [t for t in trainers if not can_share_cores(t)]
        for trainer in alone:
            _lockstep([trainer], None)
        shared = [t for t in trainers if t not in alone]
        if len(shared) > 1:
            threads = torch.get_num_threads()
            try:
                with ThreadPoolExecutor(max_workers=min(workers, len(shared)), initializer=torch.set_num_threads,
                                        initargs=(1,), thread_name_prefix="tamenet-side-by-side") as pool:
                    _lockstep(shared, pool)
            finally:
                torch.set_num_threads(threads)
            return
        trainers = shared
    _lockstep(trainers, None)


def _lockstep(trainers: list["Trainer"], pool: ThreadPoolExecutor | None) -> None:
    from .loop import DeferredInterrupt

    starts = {id(t): time.perf_counter() - t.state.wall_time for t in trainers}
    interrupts = DeferredInterrupt()
    try:
        with interrupts:
            for trainer in trainers:
                trainer.events.emit("train_begin", trainer)
            running = [t for t in trainers if t.state.epoch < t.recipe.train.epochs]
            while running:
                numbers = _epochs(running, pool)
                with interrupts.hold():  # the epoch's bookkeeping is done whole or not at all
                    for trainer, epoch in zip(running, numbers):
                        trainer.close_epoch(epoch, starts[id(trainer)])
                running = [t for t in running if t.trains_on()]
    except KeyboardInterrupt:
        for trainer in trainers:
            trainer.state.interrupted = True
    for trainer in trainers:
        trainer.end_run(starts[id(trainer)])


def _epochs(trainers: list["Trainer"], pool: ThreadPoolExecutor | None) -> list[tuple[Any, ...]]:
    """Every trainer's next epoch (`Trainer.train_epoch`): in turn on this thread, or at once on the pool's."""
    if pool is None or len(trainers) == 1:
        return [t.train_epoch() for t in trainers]
    futures = [pool.submit(t.train_epoch) for t in trainers]
    try:
        wait(futures)
    except KeyboardInterrupt:  # the workers finish the epoch they are in; none of it is taken in
        wait(futures)
        raise
    return [f.result() for f in futures]  # a worker's error is raised here, after every worker has stopped
