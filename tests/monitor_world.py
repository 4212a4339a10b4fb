"""Test doubles for the monitor that are real code, not mocks: a clock tests move by hand, a notifier that
records what it is given, and a wait for work done in other tasks and threads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hemowatch.notifications import AlertNotice, NoticeKind

T0 = 1_800_000_000.0


class ManualClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingNotifier:
    """Keeps every notice it is given; `script` may make a delivery fail or hang."""

    def __init__(self, script: Callable[[AlertNotice], Awaitable[None]] | None = None) -> None:
        self.notices: list[AlertNotice] = []
        self.attempts: list[AlertNotice] = []
        self._script = script

    async def deliver(self, notice: AlertNotice) -> None:
        self.attempts.append(notice)
        if self._script is not None:
            await self._script(notice)
        self.notices.append(notice)

    def seen(self) -> list[tuple[str, NoticeKind]]:
        return [(n.condition, n.kind) for n in self.notices]


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until `check()` holds (the monitor works in other tasks and threads)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
