"""keep_freed_memory: freed large blocks are reused instead of being mapped afresh (measured in page faults)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tamenet.allocator import keep_freed_memory

LOOP = """
import resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # warm-up: 48 MB, above glibc's default mmap threshold; the heap settles within the first
    torch.ones(12_000_000)  # few blocks (how many depends on what was imported before the thresholds changed)
start = faults()
for _ in range(20):
    torch.ones(12_000_000)  # written, then freed at once
print(faults() - start)
"""


def _faults(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", setup + LOOP], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_freed_blocks_are_reused_instead_of_faulting_in_fresh_pages():
    kept = _faults("from tamenet.allocator import keep_freed_memory\nassert keep_freed_memory()\n")
    default = _faults("")
    pages = 12_000_000 * 4 // 4096  # one 48 MB block: ~11,700 pages
    assert default > 15 * pages  # glibc's default: a fresh mapping (and its page faults) for every block
    assert kept <= 3 * pages  # kept on the heap: one or two blocks are faulted in afresh, not twenty


def test_bad_limit_is_refused():
    with pytest.raises(ValueError, match="positive number of bytes"):
        keep_freed_memory(0)
