"""Test doubles that are real code, not mocks: a clock tests move by hand (the bot tests use it too) and a
notifier that records what the monitor gives it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.notifications import AlertNotice, NoticeKind, ServiceNotice

T0 = 1_800_000_000.0


class ManualClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingNotifier:
    """Keeps every notice it is given (alert notices and, in `told_admins`, service notices); `script` may make
    an alert's delivery fail or hang."""

    def __init__(self, script: Callable[[AlertNotice], Awaitable[None]] | None = None) -> None:
        self.notices: list[AlertNotice] = []
        self.attempts: list[AlertNotice] = []
        self.told_admins: list[ServiceNotice] = []
        self._script = script

    async def deliver(self, notice: AlertNotice) -> None:
        self.attempts.append(notice)
        if self._script is not None:
            await self._script(notice)
        self.notices.append(notice)

    async def tell_admins(self, notice: ServiceNotice) -> None:
        self.told_admins.append(notice)

    def seen(self) -> list[tuple[str, NoticeKind]]:
        return [(n.condition, n.kind) for n in self.notices]

