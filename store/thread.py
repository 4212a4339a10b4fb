"""A store connection of its own, used from one worker thread of its own, so the database never blocks the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from store import open_database
from store.database import Database
from store.sqlite_schema import Synchronous


class StoreThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        assert self._db is not None, "open() the store first"
        return self._db

    async def open(
        self, location: Path | str, synchronous: Synchronous = "FULL", busy_timeout_s: float = 30.0
    ) -> Database:
        self._db = await self.run(open_database, location, synchronous, busy_timeout_s)
        return self._db

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on the thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(function, *args))

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """A store function `function(db, *args)` on the thread."""
        return await self.run(function, self.db, *args)

    async def close(self) -> None:
        if self._db is not None:
            await self.run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
