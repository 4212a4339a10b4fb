"""Waiting for work done in other tasks, threads or processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(check: Callable[[], object], timeout: float = 15.0, what: str = "the condition") -> None:
    """Wait until `check()` is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"waited {timeout:g} s in vain for {what}")
        await asyncio.sleep(0.01)
