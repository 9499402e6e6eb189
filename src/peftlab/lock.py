"""One writer per study folder: an exclusive ``flock`` on OUT/.peftlab.lock, held while a process writes the study.

`peftlab compare` (the recipe: runs, diagnosis, report) and `peftlab robustness` take it; a second process finds
it taken and is refused in one line (:class:`StudyInUse`), or waits for it (``--wait``). The file holds the
holder's PID, host and start time as text, for that message; it is never deleted (deleting a lock file lets two
processes lock two different files of the same name).

There is no stale-lock logic: the kernel releases a ``flock`` when the last descriptor of it is closed, which
happens when its process exits, however it exits (SIGKILL included). A lock left by a dead process is therefore
simply a lock that can be taken. The descriptor is not inherited by spawned or exec'd processes (Python's default);
a process forked without exec (a DataLoader worker) shares it and keeps the lock while it lives.
On a network file system ``flock`` is only as good as the server's locking (Linux NFS maps it to POSIX locks).

Stdlib only, on the lowest floor, so `import peftlab.lock` stays light.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from peftlab.errors import ConfigError
from peftlab.files import LOCK_FILE


class StudyInUse(ConfigError):
    """Another process holds the study folder's lock."""


def lock_holder(folder: str | Path) -> dict[str, str]:
    """What the lock file says about its holder (``pid``, ``host``, ``started_at``); empty when unreadable."""
    try:
        text = (Path(folder) / LOCK_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    holder = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return holder if holder.get("pid", "").isdigit() else {}


def describe_holder(folder: str | Path, holder: dict[str, str]) -> str:
    if not holder:
        return f"the study in {folder} is in use by another process"
    host = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    return f"the study in {folder} is in use by process {holder['pid']}{host} (started at {holder.get('started_at', '?')})"


class StudyLock:
    """The exclusive lock of a study folder; ``with StudyLock(out).acquire(): ...`` or ``acquire()`` / ``release()``."""

    def __init__(self, folder: str | Path, advice: str = "wait for it (--wait) or pass another --out"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.advice = advice
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> "StudyLock":
        """Take the lock. Taken by another process: raise :class:`StudyInUse`, or with ``wait`` call ``on_wait``
        with who holds it and block until it is released (Ctrl-C interrupts the wait)."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            holder = self._try(fd)
            if holder is not None:
                if not wait:
                    raise StudyInUse(f"{describe_holder(self.folder, holder)}; {self.advice}")
                if on_wait:
                    on_wait(describe_holder(self.folder, holder))
                fcntl.flock(fd, fcntl.LOCK_EX)
            text = (f"pid={os.getpid()}\nhost={socket.gethostname()}\n"
                    f"started_at={datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
        except BaseException:
            os.close(fd)  # closing the descriptor releases the lock if it was taken
            raise
        self._fd = fd
        return self

    def _try(self, fd: int) -> dict[str, str] | None:
        """None when the lock is taken now; else its holder (read again briefly while the holder writes it)."""
        for _ in range(40):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                holder = lock_holder(self.folder)
                if holder:
                    return holder
            time.sleep(0.05)  # the holder has the lock but has not written its PID yet
        return {}

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # while still held: nobody reads a finished holder's PID
        finally:
            os.close(fd)  # releases the lock

    def __enter__(self) -> "StudyLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
