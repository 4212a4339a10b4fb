"""Another process holding the SQLite write lock, as a long transaction, a backup or a stuck tool would."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

# Takes the write lock in a transaction (BEGIN IMMEDIATE), says so, and keeps it until its stdin closes.
_HOLDER = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('begin immediate')\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
    "db.rollback()\n"
)


@asynccontextmanager
async def write_lock(path: Path) -> AsyncIterator[None]:
    """Another process holds the write lock of the database at `path` from entering the block to leaving it."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert await holder.stdout.readline() == b"locked\n"
        yield
    finally:
        holder.stdin.close()
        assert await holder.wait() == 0
