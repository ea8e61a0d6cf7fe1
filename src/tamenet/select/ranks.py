"""A search or cross-validation spread over the ranks of a `torch.distributed` job: chunks of members per rank.

A selection population is already trained in chunks of members when it exceeds the memory budget, and the chunked
results equal the unchunked ones exactly (every member's weights, batches and masks are functions of its own seed).
Spread over N processes (``tamenet search ... --nproc N``, or ``torchrun --nnodes ...``), the same chunks are dealt
round robin: chunk i is trained by rank ``i % N``. With fewer chunks than ranks the population is cut into at least
N chunks first (whole candidates when halving or a pruner compares them). After its chunks, every rank sends what it
measured (per-member scores, best epochs, metrics rows) to every other (`all_gather_object` over gloo), so each
holds the whole population's results, takes the same decisions and calls the next population in step; only the
main rank (rank 0) refits and writes the run directory.

Pure functions (`spread_chunks`, `chunks_for_rank`, `chunk_part`, `absorb`) are tested without processes; the
one collective is `Spread.exchange`.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from typing import Any

EXCHANGE_TIMEOUT_S = 7 * 24 * 3600.0
"""How long a rank waits in the exchange for the slowest rank's chunks (a chunk may train for hours)."""


def spread_chunks(members: int, size: int, *, group: int, world: int) -> list[list[int]]:
    """Members 0..`members`-1 cut into consecutive chunks for `world` ranks: at most `size` members each (the
    memory budget's chunk), whole `group`s (a candidate's folds when halving or a pruner compares them), and at
    least `world` chunks when there are that many groups. With G groups the count is
    ``max(ceil(G / (size / group)), min(world, G))``, the groups shared as evenly as they go (the first chunks
    one group more), so the ranks' shares differ by at most one group."""
    if members < 1 or size < 1 or group < 1 or world < 1:
        raise ValueError(f"spread_chunks: expected positive counts, got members={members}, size={size}, "
                         f"group={group}, world={world}")
    groups = math.ceil(members / group)
    per_chunk = max(1, size // group)
    count = max(math.ceil(groups / per_chunk), min(world, groups))
    base, extra = divmod(groups, count)
    chunks, start = [], 0
    for i in range(count):
        stop = start + (base + (i < extra)) * group
        chunks.append(list(range(start, min(stop, members))))
        start = stop
    return chunks


def chunks_for_rank(n_chunks: int, rank: int, world: int) -> list[int]:
    """The chunk indices rank `rank` of `world` trains: round robin, chunk i on rank ``i % world``."""
    if not 0 <= rank < world:
        raise ValueError(f"chunks_for_rank: expected a rank in [0, {world}), got {rank}")
    return list(range(rank, n_chunks, world))


@dataclass
class ChunkState:
    """The loop state a finished chunk keeps, enough for the run's totals (`CVRun.train_time`, `interrupted`)."""

    wall_time: float
    interrupted: bool
    epoch: int


@dataclass
class RemoteChunk:
    """A chunk another rank trained, as this rank knows it: its members, metrics rows and loop state.

    It stands where a released `Trainer` stands in `CVRun.trainers` (`history`, `state.wall_time`,
    `state.interrupted`, `member_ids`)."""

    member_ids: list[int]
    history: list[dict]
    state: ChunkState
    rank: int = 0


SCORE_FIELDS = ("best_epoch", "diverged_at", "dropped_at", "stopped", "epochs")
"""The per-member lists of `cv._Scores` besides `values` (split -> quantity -> [M])."""


def chunk_part(results: Any, trainer: Any, members: list[int], rank: int) -> dict[str, Any]:
    """What a rank sends for one chunk it trained: its members' entries of `results` (a `cv._Scores`), the
    chunk's metrics rows and loop state. Plain Python values (pickled by `all_gather_object`)."""
    return {
        "members": list(members),
        "rank": rank,
        "values": {split: {q: [v[m] for m in members] for q, v in by_q.items()}
                   for split, by_q in results.values.items()},
        **{name: [getattr(results, name)[m] for m in members] for name in SCORE_FIELDS},
        "history": list(trainer.history),
        "state": {"wall_time": float(trainer.state.wall_time), "interrupted": bool(trainer.state.interrupted),
                  "epoch": int(trainer.state.epoch)},
    }


def absorb(results: Any, part: dict[str, Any]) -> RemoteChunk:
    """Write another rank's chunk into `results` (a `cv._Scores`) and return its stand-in for `CVRun.trainers`."""
    members = part["members"]
    for split, by_q in part["values"].items():
        for q, values in by_q.items():
            for m, v in zip(members, values):
                results.values[split][q][m] = v
    for name in SCORE_FIELDS:
        target = getattr(results, name)
        for m, v in zip(members, part[name]):
            target[m] = v
    return RemoteChunk(list(members), list(part["history"]), ChunkState(**part["state"]), part["rank"])


@dataclass
class Spread:
    """This process's place among the ranks that share a search, and the group its exchanges run on.

    Build it with `Spread.join` (once the default process group is joined, `tamenet.dist.group.join`);
    `Spread(rank, world)` without a group is for tests of the pure parts.
    """

    rank: int
    world_size: int
    group: Any = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def join(cls, rank: int, world_size: int, timeout_s: float = EXCHANGE_TIMEOUT_S) -> "Spread":
        """A gloo group over every rank whose exchanges wait up to `timeout_s` for the slowest rank (the default
        group keeps the short rendezvous timeout, so a process that never starts is still one line)."""
        import torch.distributed as dist

        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
        return cls(rank, world_size, group)

    def exchange(self, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every rank's chunk parts, in chunk order of arrival by rank (all ranks get the same list)."""
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, parts, group=self.group)
        return [part for rank_parts in gathered for part in rank_parts]

    def barrier(self) -> None:
        """Wait for every rank (e.g. before the main rank reads a shared Optuna study)."""
        import torch.distributed as dist

        dist.barrier(group=self.group)
