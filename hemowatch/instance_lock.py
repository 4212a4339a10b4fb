"""One running service per SQLite file: an exclusive lock on `<database>.lock`, held while the service runs.

Two services on one file would each deliver the outbox, judge the same patients and take the broker session from
each other. The lock is `flock`, so the kernel lets go of it whenever the process ends, a `kill -9` or a crash
included: a service started after a crash is never refused by a lock left behind. The file stays (removing it
would let a third process lock a new file while a second one still waits on the old); it holds the pid of the
service that last took it, for the message the next one prints.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AlreadyRunning(Exception):
    """Another service holds the database; the message says so in one line."""


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextmanager
def instance_lock(database: Path) -> Iterator[None]:
    """Hold the database for this process; AlreadyRunning when another process holds it."""
    path = lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the scan workers (PEP 446)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(_refusal(database, _holder(descriptor))) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # lets go of the lock


def _holder(descriptor: int) -> int | None:
    """The pid the holder wrote (None if it has not yet, or the file says something else)."""
    text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _refusal(database: Path, pid: int | None) -> str:
    who = f"Another HemoWatch (pid {pid})" if pid is not None else "Another HemoWatch"
    return (
        f"{who} is already running on the database {database.resolve()}, so this one does not start. Only one "
        "HemoWatch may use a SQLite database file; running several instances side by side would need a shared "
        "PostgreSQL database, which this version does not offer yet."
    )
