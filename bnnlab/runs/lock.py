"""One run per workdir: an exclusive ``flock`` on ``<workdir>/.lock``, held while training.

The kernel drops the lock when its process exits, however it exits (SIGKILL included), so a
killed run never leaves a lock that blocks the next one; the file only keeps the last owner's
pid, host and start time, for the message that names it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
import time

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
    """Another process holds the workdir."""


class WorkdirLock:
    """``with WorkdirLock(workdir):`` — raises ``WorkdirBusy`` naming the holder."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> WorkdirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            raise WorkdirBusy(
                f"{self.path.parent} is in use by another run ({_describe(holder)}); wait for it "
                "to finish or use another --workdir."
            ) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.ctime()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(holder: str) -> str:
    try:
        owner = json.loads(holder)
        return f"process {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that did not record itself"
