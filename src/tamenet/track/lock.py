"""Who writes a run folder: a lock file that a crashed process does not leave behind forever.

``<run>/.lock`` holds ``{"pid", "host", "started"}`` of the process that writes the folder. It is
created whole (written to a temporary file, then hard-linked into place, which fails if a lock is
already there), so a second writer never sees half a lock. A lock is *stale*, and is taken over,
when its process is gone: same host, and no process with that pid, or one that started after the
lock was taken (the pid was reused). A lock from another host cannot be checked and is refused.

The same test tells a run whose status.json still says "running" after a `kill -9`: `run_state`
reports it as "crashed". Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "holder_alive", "process_started_at", "run_state"]

LOCK_NAME = ".lock"
"""The lock file's name inside a run folder."""

START_SLACK_S = 2.0
"""A process that started up to this long after a lock's time may still be its writer (clock granularity)."""


class RunLockedError(UserError, OSError):
    """Another live process writes this run folder."""


def host() -> str:
    return socket.gethostname()


def process_started_at(pid: int) -> float | None:
    """When the process `pid` started (seconds since the epoch), from /proc; None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped) writes nothing
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _timestamp(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def holder_alive(info: dict) -> bool | None:
    """Whether the process an entry names (`pid`, `host`, `started`) still runs: True, False, or None when
    it cannot be told (another host)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    if info.get("host", host()) != host():
        return None
    if not _pid_exists(pid):
        return False
    began, since = process_started_at(pid), _timestamp(info.get("started"))
    if began is not None and since is not None and began > since + START_SLACK_S:
        return False  # the pid now belongs to a process started after the entry was written
    return True


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunLock:
    """The lock on one run folder; `acquire` takes it (or raises `RunLockedError`), `release` gives it back."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.info = {"pid": os.getpid(), "host": host(), "started": _now()}
        self.held = False

    def acquire(self) -> "RunLock":
        tmp = self.folder / f"{LOCK_NAME}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.info), encoding="utf-8")
        try:
            for _ in range(5):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return self
                except FileExistsError:
                    pass
                holder = _read(self.path)
                if holder is None:  # being written (not with link: an old or foreign file) or garbage
                    if time.time() - self._mtime() < 1.0:
                        time.sleep(0.2)
                        continue
                elif holder.get("pid") != os.getpid() or holder.get("host") != host():
                    alive = holder_alive(holder)
                    if alive is None:
                        raise RunLockedError(
                            f"run folder {self.folder} is locked by process {holder.get('pid')} on host "
                            f"{holder.get('host')} (since {holder.get('started')}), which cannot be checked from "
                            f"here; if that run has ended, delete {self.path}")
                    if alive:
                        raise RunLockedError(
                            f"run folder {self.folder} is being written by process {holder.get('pid')} (since "
                            f"{holder.get('started')}); wait for it to end, stop it, or pick another folder")
                # stale (its process is gone) or our own process's: take it over
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
            raise RunLockedError(f"run folder {self.folder}: could not take its lock {self.path} (another process "
                                 "keeps taking it); try again")
        finally:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        """Remove the lock file if it is still this process's (a no-op otherwise, and when already released)."""
        if not self.held:
            return
        self.held = False
        holder = _read(self.path)
        if holder is not None and holder.get("pid") == self.info["pid"] and holder.get("started") == self.info["started"]:
            try:
                self.path.unlink()
            except OSError:
                pass


def run_state(folder: Path | str) -> dict[str, Any]:
    """A run folder's status.json as it really is: state "crashed" (with "note") when it says "running" but its
    process is gone; "unknown" without a readable status.json. Never raises for a folder that exists."""
    status = _read(Path(folder) / "status.json")
    if status is None:
        return {"state": "unknown", "note": "no readable status.json"}
    if status.get("state") == "running" and holder_alive(status) is False:
        return {**status, "state": "crashed",
                "note": f"status.json says running, but its process {status.get('pid')} is gone"}
    return status
