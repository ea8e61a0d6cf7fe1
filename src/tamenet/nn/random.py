"""Per-member random streams that do not depend on the population around a member.

Member m of a population must draw the same dropout masks and noise as a single run with the
same seed, so its random numbers are a pure function of (seed_m, step, stream, element index):
a counter-based generator built from an integer hash, vectorized over members with plain
tensor ops. `torch.rand` with one shared generator could not give that guarantee.

References: C. Wellons, "Prospecting for hash functions" (2018), the `lowbias32` mixer;
J. Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011 (counter-based RNGs).
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Mix int64 values in [0, 2^32) into well-spread 32-bit values (no int64 overflow)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _MASK32
    return x ^ (x >> 16)


def mix_seed(*parts: int) -> int:
    """Combine integers (seed, layer, epoch, ...) into one 32-bit key, deterministically."""
    key = torch.tensor(0x9E3779B9, dtype=torch.int64)
    for part in parts:
        key = hash32((key ^ (int(part) & _MASK32)) & _MASK32)
    return int(key)


class MemberRandom:
    """The random source of a population: one seed per member and a step counter set by the loop.

    Each stochastic site (a dropout layer, input noise) owns a `stream` number; draws at the same
    (step, stream) for the same seed are identical whatever the population size.
    """

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = [int(s) for s in seeds]
        self.step = 0
        self.row_offset = 0  # data-parallel training: the global batch position of this process's first row
        self._seed_keys = torch.tensor([mix_seed(s) for s in self.seeds], dtype=torch.int64)
        self._device_keys: dict[torch.device, torch.Tensor] = {}  # the keys copied once to each accelerator

    @property
    def size(self) -> int:
        return len(self.seeds)

    def keep_(self, members: list[int]) -> None:
        """Keep only these members, in place (layers hold this object)."""
        self.seeds = [self.seeds[m] for m in members]
        self._seed_keys = self._seed_keys[torch.tensor(members, dtype=torch.long)]
        self._device_keys = {}

    def _keys_on(self, device: torch.device) -> torch.Tensor:
        """The members' seed keys on `device`: copied there once, so a training step sends nothing to the GPU."""
        if device.type == "cpu":
            return self._seed_keys
        if device not in self._device_keys:
            self._device_keys[device] = self._seed_keys.to(device)
        return self._device_keys[device]

    def select(self, members: list[int]) -> "MemberRandom":
        out = MemberRandom([self.seeds[m] for m in members])
        out.step = self.step
        return out

    def _bits(self, stream: int, shape: tuple[int, ...], device: torch.device, rows: bool = False) -> torch.Tensor:
        step_key = mix_seed(self.step, stream)
        keys = hash32(self._keys_on(device) ^ step_key)
        count = math.prod(shape)
        start = self.row_offset * math.prod(shape[1:]) if rows and shape else 0
        index = torch.arange(start, start + count, dtype=torch.int64, device=device).view(1, *shape)
        keys = keys.view(-1, *([1] * len(shape)))
        return hash32((hash32(index ^ keys) + keys) & _MASK32)

    def uniform(self, stream: int, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                rows: bool = False) -> torch.Tensor:
        """U[0, 1) of shape [M, *shape], float32 with 24 random bits.

        `rows=True`: shape[0] is the batch axis, and row i draws the numbers of row `row_offset + i` (a process of
        a data-parallel job, holding rows [row_offset, row_offset + B) of the global batch, draws what those rows
        draw in a single process; `row_offset` is 0 outside such a job)."""
        bits = self._bits(stream, tuple(shape), torch.device(device), rows)
        return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))

    def generator_keep(
        self, stream: int, shape: tuple[int, ...], p: torch.Tensor, *, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Keep masks [M, *shape] (bool) with P(keep) = 1 - p[m], from torch's own generator, member m's
        seeded by (seed_m, step, stream): independent of the population around a member like `uniform`,
        but another sequence, and several times cheaper for large draws (Monte-Carlo dropout draws T
        copies of a batch's masks): 16 random bits per element, compared with round(p * 2^16), so the drop
        probability is p rounded to a multiple of 2^-16 (an error below 8e-6)."""
        device = torch.device(device)
        count = math.prod(shape)
        words = -(-count // 4)  # int64 words of four 16-bit draws
        bits = torch.empty(len(self.seeds), words * 4, dtype=torch.int16, device=device)
        for m, seed in enumerate(self.seeds):
            generator = torch.Generator(device=device).manual_seed(mix_seed(seed, self.step, stream, 0x6D63))
            bits[m].view(torch.int64).random_(-(1 << 63), (1 << 63) - 1, generator=generator)
        threshold = (torch.round(p.double() * 65536) - 32768).clamp(-32768, 32767).to(torch.int16).to(device)
        return (bits[:, :count] >= threshold.view(-1, 1)).view(len(self.seeds), *shape)

    def normal(self, stream: int, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
               rows: bool = False) -> torch.Tensor:
        """N(0, 1) of shape [M, *shape] by the Box-Muller transform of two uniform streams (`rows`: see `uniform`)."""
        u1 = self.uniform(2 * stream + 1_000_003, shape, device=device, rows=rows)
        u2 = self.uniform(2 * stream + 1_000_004, shape, device=device, rows=rows)
        radius = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1 - u1 lies in (0, 1]
        return radius * torch.cos((2.0 * math.pi) * u2)
