"""Wakes waiters whenever updates, the bot's messages or the webhook change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Changes:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.version = 0  # counts every change to a conversation or a callback answer

    def notify(self) -> None:
        self.event.set()
        self.event = asyncio.Event()

    def count(self) -> None:
        """A conversation or a callback answer changed."""
        self.version += 1
        self.notify()

    async def until(self, ready: Callable[[], Any], timeout: float) -> Any:
        """Return the first truthy `ready()`, or None after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := ready()):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except TimeoutError:
                return None
        return result
