"""Keep freed memory in the process for reuse (glibc's malloc), instead of returning it to the system.

A population's gradients and activations are large tensors (M = 130 members of a 256x256 layer: a
34 MB gradient) that are allocated and freed at every step. glibc serves blocks above its mmap
threshold (at most 32 MB by default) with fresh `mmap` pages and gives them back on `free`, so every
step touches new pages: hundreds of thousands of page faults per search. Raising the mmap and trim
thresholds keeps those blocks on the heap, where the next step reuses them (measured in
bench/README.md). Threads that allocate (populations trained side by side, `train/side_by_side.py`) would
each get an arena of their own, whose heaps glibc maps and unmaps in pieces of at most 64 MB: the 130-member
search side by side took 134,000 page faults in 4 s that way. One arena for the whole process keeps their
blocks on the one heap too (about 50 faults); a few threads that allocate a few hundred blocks per step do not
contend for its lock measurably. The `tamenet` command calls this once at start-up; a library user may call it too.
It changes the whole process's allocator, so the library never calls it on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30
"""Blocks up to this size come from the heap, and up to twice this much free memory stays in the process."""


def keep_freed_memory(limit: int = KEEP_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds to `limit` bytes (and 2x) and keep one arena; True when glibc
    accepted all three.

    False, and nothing changed, on other C libraries and systems (musl, macOS, Windows).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"keep_freed_memory: expected a positive number of bytes, got {limit!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = min(limit, 2**30)  # both settings are C ints
    thresholds = bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, min(2 * limit, 2**31 - 1)))
    return thresholds and bool(mallopt(M_ARENA_MAX, 1))
